"""`ssd eval` end to end through the real entry point: files in, metrics and one-line errors out.

COCO numbers are checked against pycocotools' COCOeval run directly; VOC numbers against the devkit
transcription of test_metrics_voc.py, on the real BCCD data set (VOC layout) with generated detections.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ssdcli.cli.app import main
from ssdcli.core.detections import Detections
from ssdcli.data.results_io import write_coco_results, write_devkit_detections
from test_metrics_coco import STATS_ORDER, generate, raw_cocoeval
from test_metrics_voc import devkit_eval_class, one_row

BCCD = Path(__file__).resolve().parents[2] / "shared" / "data" / "bccd" / "BCCD"


def write(path: Path, payload: object) -> Path:
    path.write_text(json.dumps(payload))
    return path


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert "Traceback" not in err[0]
    return err[0]


# ------------------------------------------------------------------------------------------------- COCO


@pytest.fixture
def coco_files(tmp_path: Path) -> tuple[Path, Path, dict, list]:
    gt, results = generate(7)
    return write(tmp_path / "instances.json", gt), write(tmp_path / "detections.json", results), gt, results


def test_coco_json_has_exactly_the_twelve_keys_equal_to_cocoeval(
    coco_files, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt_path, results_path, gt, results = coco_files
    out = tmp_path / "metrics.json"
    assert main(["eval", "--coco", "--gt", str(gt_path), "--results", str(results_path), "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert list(written) == STATS_ORDER
    assert all(isinstance(v, float) for v in written.values())
    assert written == pytest.approx(dict(zip(STATS_ORDER, raw_cocoeval(gt, results).stats)), abs=1e-9)
    shown = capsys.readouterr().out
    assert "AP50" in shown and "ARl" in shown and "Running per image" not in shown


def test_coco_per_class_table(coco_files, capsys: pytest.CaptureFixture[str]) -> None:
    gt_path, results_path, _, _ = coco_files
    assert main(["eval", "--coco", "--gt", str(gt_path), "--results", str(results_path), "--per-class"]) == 0
    shown = capsys.readouterr().out
    assert all(name in shown for name in ("person", "airplane", "toothbrush"))


def test_coco_json_to_stdout_is_only_json(coco_files, capsys: pytest.CaptureFixture[str]) -> None:
    gt_path, results_path, gt, results = coco_files
    assert main(["eval", "--coco", "--gt", str(gt_path), "--results", str(results_path), "--json", "-"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["AP"] == pytest.approx(raw_cocoeval(gt, results).stats[0], abs=1e-9)


def test_coco_empty_results_give_zeros(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = {
        "images": [{"id": 3}, {"id": 9}],
        "categories": [{"id": 2, "name": "a"}],
        "annotations": [
            {"id": k + 1, "image_id": 3, "category_id": 2, "bbox": [0, 0, s, s], "area": s * s, "iscrowd": 0}
            for k, s in enumerate([10, 50, 200])
        ],
    }
    out = tmp_path / "m.json"
    args = ["eval", "--coco", "--gt", str(write(tmp_path / "gt.json", gt)), "--results"]
    assert main([*args, str(write(tmp_path / "r.json", [])), "--json", str(out)]) == 0
    assert json.loads(out.read_text()) == dict.fromkeys(STATS_ORDER, 0.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{\"image_id\": 1,", "malformed JSON"),
        ("", "is empty"),
        ("{\"annotations\": []}", "results must be a JSON list"),
        ("[3]", "result 0: expected a JSON object"),
        ("[{\"image_id\": 1000, \"category_id\": 1, \"bbox\": [0, 0, 1, 1]}]", "missing key 'score'"),
        ("[{\"image_id\": 1000, \"category_id\": 1, \"bbox\": [0, 0, 1], \"score\": 1}]", "bbox must be 4 finite"),
        ("[{\"image_id\": 1000, \"category_id\": 1, \"bbox\": [0, 0, 1, 1], \"score\": \"hi\"}]", "score must be"),
        ("[{\"image_id\": 4, \"category_id\": 1, \"bbox\": [0, 0, 1, 1], \"score\": 1}]", "image_id 4 is not in"),
        ("[{\"image_id\": 1000, \"category_id\": 3, \"bbox\": [0, 0, 1, 1], \"score\": 1}]", "category_id 3 is not in"),
    ],
)
def test_coco_bad_results_are_one_line_errors(
    coco_files, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    gt_path = coco_files[0]
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert main(["eval", "--coco", "--gt", str(gt_path), "--results", str(bad)]) == 2
    line = one_line_error(capsys)
    assert str(bad) in line and message in line


def test_coco_missing_files(coco_files, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt_path, results_path, _, _ = coco_files
    missing = tmp_path / "nope.json"
    assert main(["eval", "--coco", "--gt", str(gt_path), "--results", str(missing)]) == 2
    assert str(missing) in one_line_error(capsys)
    assert main(["eval", "--coco", "--gt", str(missing), "--results", str(results_path)]) == 2
    assert f"{missing}: ground-truth file not found" in one_line_error(capsys)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda gt: gt["annotations"][0].update(bbox=[1.0, 2.0, -3.0, 4.0]), "annotations[0]: box with negative width"),
        (lambda gt: gt["annotations"][1].update(image_id=999), "annotations[1] refers to image id 999"),
        (lambda gt: gt["annotations"][2].update(id=gt["annotations"][0]["id"]), "appears more than once"),
        (lambda gt: gt["annotations"][0].pop("id"), "annotations[0] has no 'id'"),
    ],
)
def test_coco_ground_truth_is_checked_as_training_reads_it(
    coco_files, tmp_path: Path, capsys: pytest.CaptureFixture[str], change, message: str
) -> None:
    """`ssd eval --coco` reads the instances file with the data set reader: what training refuses it refuses with
    the same words, plus what pycocotools needs (an id for each annotation, given once)."""
    _, results_path, gt, _ = coco_files
    change(gt)
    bad = write(tmp_path / "bad_gt.json", gt)
    assert main(["eval", "--coco", "--gt", str(bad), "--results", str(results_path)]) == 2
    line = one_line_error(capsys)
    assert str(bad) in line and message in line


def test_faster_coco_eval_backend_missing(coco_files, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pycocotools")
    if __import__("importlib").util.find_spec("faster_coco_eval") is not None:
        pytest.skip("faster-coco-eval is installed")
    gt_path, results_path, _, _ = coco_files
    args = ["eval", "--coco", "--gt", str(gt_path), "--results", str(results_path), "--backend", "faster-coco-eval"]
    assert main(args) == 2
    assert "pip install faster-coco-eval" in one_line_error(capsys)


@pytest.mark.parametrize(
    "args",
    [
        ["--results", "r.json"],
        ["--coco", "--voc", "--results", "r.json"],
        ["--coco", "--results", "r.json"],
        ["--voc", "--results", "r.json"],
        ["--coco", "--gt", "g.json", "--results", "r.json", "--metric", "voc12"],
        ["--voc", "--data", ".", "--results", "r.json", "--iou", "1.5"],
    ],
)
def test_option_mistakes_are_usage_errors(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", *args]) == 2
    one_line_error(capsys)


def test_checkpoint_mode_needs_data(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--checkpoint", "model.pt"]) == 2
    assert "--data" in one_line_error(capsys)


def test_checkpoint_mode_with_a_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "model.pt"
    assert main(["eval", "--checkpoint", str(missing), "--data", str(tmp_path)]) == 2
    assert str(missing) in one_line_error(capsys)


# -------------------------------------------------------------------------------------------------- VOC


def read_split_objects(root: Path, split: str) -> dict[str, list[tuple[str, list[float], bool]]]:
    """The split's objects as the devkit reads them: (class, [xmin, ymin, xmax, ymax], difficult)."""
    lines = (root / "ImageSets" / "Main" / f"{split}.txt").read_text().splitlines()
    ids = [line.split()[0] for line in lines if line.strip()]
    recs = {}
    for image_id in ids:
        objs = []
        for obj in ET.parse(root / "Annotations" / f"{image_id}.xml").getroot().findall("object"):
            box = [float(obj.find("bndbox").find(tag).text) for tag in ("xmin", "ymin", "xmax", "ymax")]
            difficult = obj.find("difficult") is not None and obj.find("difficult").text.strip() == "1"
            objs.append((obj.find("name").text.strip(), box, difficult))
        recs[image_id] = objs
    return recs


def make_detections(recs, classes, seed: int) -> list[tuple[str, str, float, list[float]]]:
    """GT boxes jittered by multiples of 1/4 pixel (exact in binary), random scores, some dropped, duplicates and
    false positives added; boxes in devkit coordinates."""
    rng = random.Random(seed)
    dets = []
    for image_id, objs in recs.items():
        for cls, box, _ in objs:
            if rng.random() < 0.15:
                continue
            for _ in range(1 if rng.random() < 0.9 else 2):
                b = [box[k] + rng.randint(-40, 40) / 4 for k in range(4)]
                b[2], b[3] = max(b[2], b[0]), max(b[3], b[1])
                dets.append((image_id, cls, rng.random(), b))
        for _ in range(rng.randint(0, 3)):
            x, y = rng.randint(1, 500), rng.randint(1, 400)
            box = [x, y, x + rng.randint(5, 100), y + rng.randint(5, 100)]
            dets.append((image_id, rng.choice(classes), rng.random() * 0.5, box))
    return dets


def as_detections(dets, classes) -> list[Detections]:
    """One Detections per generated row (image id, class, score, devkit box), in order; labels index ``classes``."""
    return [one_row(i, list(classes).index(c) + 1, s, b) for i, c, s, b in dets]


def devkit_rows(dets, classes) -> list:
    return [row for found in as_detections(dets, classes) for row in found.to_devkit(classes)]


def coco_results(dets, classes) -> list[dict]:
    """COCO results of a VOC split: image ids as written, category ids 1-based into ``classes``."""
    return [record for found in as_detections(dets, classes) for record in found.to_coco()]


def expected(recs, dets, classes, metric: str, iou: float = 0.5) -> dict[str, float]:
    out = {}
    for cls in classes:
        npos = sum(1 for objs in recs.values() for c, _, d in objs if c == cls and not d)
        class_dets = [(i, s, b) for i, c, s, b in dets if c == cls]
        out[cls] = devkit_eval_class(recs, class_dets, cls, iou, metric == "voc07") if npos else math.nan
    return out


def check_json(path: Path, want: dict[str, float]) -> None:
    written = json.loads(path.read_text())
    assert set(written) == {"mAP", "per_class"}
    assert list(written["per_class"]) == list(want)
    for cls, ap in want.items():
        if math.isnan(ap):
            assert written["per_class"][cls] is None
        else:
            assert written["per_class"][cls] == pytest.approx(ap, abs=1e-9), cls
    scored = [ap for ap in want.values() if not math.isnan(ap)]
    assert written["mAP"] == pytest.approx(sum(scored) / len(scored), abs=1e-9)


@pytest.fixture(scope="module")
def bccd() -> Path:
    if not (BCCD / "ImageSets" / "Main" / "test.txt").is_file():
        pytest.skip("BCCD data set not available")
    return BCCD


@pytest.mark.parametrize("metric", ["voc07", "voc12"])
def test_voc_on_bccd_devkit_files_and_json_match_the_devkit(
    bccd: Path, tmp_path: Path, metric: str, capsys: pytest.CaptureFixture[str]
) -> None:
    recs = read_split_objects(bccd, "test")
    classes = sorted({c for objs in recs.values() for c, _, _ in objs})
    dets = make_detections(recs, classes, seed=1)
    want = expected(recs, dets, classes, metric)
    assert 0.3 < min(want.values()) and max(want.values()) < 1.0  # a real test: neither trivial nor broken

    folder = tmp_path / "devkit"
    write_devkit_detections(folder, devkit_rows(dets, classes), classes, split="test")
    assert sorted(p.name for p in folder.iterdir()) == [f"comp4_det_test_{c}.txt" for c in classes]
    out = tmp_path / "folder.json"
    args = ["eval", "--voc", "--data", str(bccd), "--split", "test", "--metric", metric, "--json"]
    assert main([*args, str(out), "--results", str(folder)]) == 0
    check_json(out, want)
    assert "mAP" in capsys.readouterr().out

    results = coco_results(dets, classes)
    named = write_coco_results(tmp_path / "named.json", results, dict(enumerate(classes, start=1)))
    assert main([*args, str(out), "--results", str(named), "--force"]) == 0  # replaces the JSON of the first run
    check_json(out, want)

    # A plain list (no class list): integer image ids are 0-based split positions, category ids 1-based classes.
    index = {image_id: k for k, image_id in enumerate(recs)}
    indexed = write(tmp_path / "indexed.json", [dict(r, image_id=index[r["image_id"]]) for r in results])
    assert main([*args, str(out), "--results", str(indexed), "--force"]) == 0
    check_json(out, want)


def test_voc_difficult_objects_class_order_and_iou(bccd: Path, tmp_path: Path) -> None:
    root = tmp_path / "BCCD"
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    shutil.copy(bccd / "ImageSets" / "Main" / "test.txt", root / "ImageSets" / "Main" / "test.txt")
    rng = random.Random(5)
    for line in (root / "ImageSets" / "Main" / "test.txt").read_text().split():
        tree = ET.parse(bccd / "Annotations" / f"{line}.xml")
        for obj in tree.getroot().findall("object"):
            if rng.random() < 0.15:
                obj.find("difficult").text = "1"
        tree.write(root / "Annotations" / f"{line}.xml")
    recs = read_split_objects(root, "test")
    assert sum(d for objs in recs.values() for _, _, d in objs) > 10
    classes = ["WBC", "RBC", "Platelets", "Eosinophil"]  # an order of our own, and a class with no objects
    dets = make_detections(recs, classes[:3], seed=2)
    want = expected(recs, dets, classes, "voc12", iou=0.6)
    path = write(tmp_path / "r.json", coco_results(dets, classes))  # a plain list: ids index --classes
    out = tmp_path / "m.json"
    args = ["eval", "--voc", "--data", str(root), "--results", str(path), "--metric", "voc12", "--iou", "0.6"]
    assert main([*args, "--classes", ",".join(classes), "--json", str(out)]) == 0
    check_json(out, want)


def test_voc_missing_class_file_is_a_warning(bccd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recs = read_split_objects(bccd, "test")
    dets = [d for d in make_detections(recs, ["RBC", "WBC"], seed=3) if d[1] != "Platelets"]
    folder = tmp_path / "dets"
    write_devkit_detections(folder, devkit_rows(dets, ["RBC", "WBC"]), ["RBC", "WBC"])
    out = tmp_path / "m.json"
    assert main(["eval", "--voc", "--data", str(bccd), "--results", str(folder), "--json", str(out)]) == 0
    assert "Platelets" in capsys.readouterr().err
    assert json.loads(out.read_text())["per_class"]["Platelets"] == 0.0


def test_voc_bad_inputs_are_one_line_errors(bccd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["eval", "--voc", "--data", str(bccd), "--results"]

    missing = tmp_path / "nothing-here"
    assert main([*base, str(missing)]) == 2
    assert f"{missing}: results file or folder not found" in one_line_error(capsys)

    assert main([*base, str(tmp_path), "--split", "nosuch"]) == 2
    assert "nosuch.txt: split file not found" in one_line_error(capsys)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*base, str(empty)]) == 2
    assert "no devkit detection files" in one_line_error(capsys)

    folder = tmp_path / "dk"
    folder.mkdir()
    (folder / "comp4_det_test_Zebra.txt").write_text("BloodImage_00001 0.5 1 1 10 10\n")
    assert main([*base, str(folder)]) == 2
    assert "comp4_det_test_Zebra.txt: detections for class 'Zebra'" in one_line_error(capsys)

    (folder / "comp4_det_test_Zebra.txt").unlink()
    bad_line = folder / "comp4_det_test_RBC.txt"
    bad_line.write_text("BloodImage_00001 0.5 1 1 10 10\nBloodImage_00001 0.5 1 1 10\n")
    assert main([*base, str(folder)]) == 2
    assert f"{bad_line}: line 2: expected 'image_id score x1 y1 x2 y2'" in one_line_error(capsys)

    bad_line.write_text("NotInSplit 0.5 1 1 10 10\n")
    assert main([*base, str(folder)]) == 2
    assert f"{bad_line}: line 1: image id 'NotInSplit' is not in split 'test'" in one_line_error(capsys)

    for result, message in [
        ({"image_id": "NotInSplit", "category_id": 1}, "image_id 'NotInSplit' is not in split 'test'"),
        ({"image_id": 72, "category_id": 1}, "image_id 72 is not an index into split 'test' (0..71)"),
        ({"image_id": 0, "category_id": 4}, "category_id 4 is not a class index 1..3"),
        ({"image_id": 0, "category_id": 0}, "category_id 0 is not a class index 1..3"),
    ]:
        path = write(tmp_path / "r.json", [{**result, "bbox": [1, 1, 5, 5], "score": 0.5}])
        assert main([*base, str(path)]) == 2
        line = one_line_error(capsys)
        assert str(path) in line and message in line

    path = write(tmp_path / "r.json", [])
    out = tmp_path / "m.json"
    assert main([*base, str(path), "--json", str(out)]) == 0
    assert json.loads(out.read_text()) == {"mAP": 0.0, "per_class": {"Platelets": 0.0, "RBC": 0.0, "WBC": 0.0}}
