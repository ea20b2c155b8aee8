"""Class ids keep their meaning between commands: every results file ssdcli writes carries the class list its ids
refer to, readers match the classes by name, a split that lacks a class does not shift them, and `ssd data
convert` keeps the source's class order.

The synthetic set of 16 images (seed 0) has no square in its test split: a class list taken from the split's
objects (circle, triangle) read a model's square (id 2) as a triangle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssdcli.cli.app import main
from ssdcli.data import results_io
from ssdcli.data.dataset import open_index
from ssdcli.data.synth import SYNTH_CLASSES, write_synth
from ssdcli.data.voc_xml import parse_voc_xml, read_split
from ssdcli.errors import DataError

CATEGORIES = [{"id": k, "name": name} for k, name in enumerate(SYNTH_CLASSES, start=1)]
BOX = [10.0, 10.0, 20.0, 20.0]


@pytest.fixture(scope="module")
def syn16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("syn") / "syn16"
    write_synth(root, images=16)
    test_names = {obj.name for i in read_split(root, "test") for obj in parse_voc_xml(root / "Annotations" / f"{i}.xml").objects}
    assert test_names == {"circle", "triangle"}, "the test split must lack squares for these tests"
    return root


def _eval_voc(root: Path, results: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    capsys.readouterr()
    assert main(["eval", "--voc", "--data", str(root), "--split", "test", "--results", str(results), *extra, "--json", "-"]) == 0
    return json.loads(capsys.readouterr().out)


def _error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_predict_then_eval_on_a_split_without_squares(
    syn16: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's case: predictions of circles and squares only; the squares must not be scored as triangles."""
    report = tmp_path / "t.json"
    args = ["predict", "--data", str(syn16), "--split", "test", "--checkpoint", str(checkpoint), "--json", str(report)]
    assert main([*args, "--conf", "0.01", "--classes", "circle,square", "--out", str(tmp_path / "p"), "--device", "cpu"]) == 0
    written = json.loads(report.read_text())
    assert written["categories"] == CATEGORIES
    assert {r["category_id"] for r in written["results"]} == {1, 2}  # the untrained model finds both

    found = _eval_voc(syn16, report, capsys)
    assert found["per_class"]["square"] is None  # no square in the split: no AP, left out of the mAP
    assert found["per_class"]["triangle"] == 0.0  # no triangle detection at all
    assert found["mAP"] == pytest.approx(found["per_class"]["circle"] / 2)  # the mean over circle and triangle

    # The same records without the class list: ids index the data set's classes, not the split's.
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(written["results"]))
    assert _eval_voc(syn16, plain, capsys) == found


def test_devkit_files_of_eval_checkpoint_read_back_on_a_split_without_squares(
    syn16: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    args = ["eval", "--checkpoint", str(checkpoint), "--data", str(syn16), "--split", "test", "--out", str(out)]
    assert main([*args, "--device", "cpu", "--json", "-"]) == 0
    own = json.loads(capsys.readouterr().out)
    assert (out / "1" / "devkit" / "comp4_det_test_square.txt").read_text()  # squares found, written in their file
    written = json.loads((out / "1" / "detections.json").read_text())
    assert written["categories"] == CATEGORIES
    for results in (out / "1" / "devkit", out / "1" / "detections.json"):
        found = _eval_voc(syn16, results, capsys)
        assert found["per_class"] == own["per_class"] and found["per_class"]["square"] is None
        assert found["mAP"] == pytest.approx(own["mAP"], abs=1e-12)


def _results(tmp_path: Path, categories: list[dict], category_id: int, image_id: str | int = 0) -> Path:
    path = tmp_path / "results.json"
    record = {"image_id": image_id, "category_id": category_id, "bbox": BOX, "score": 0.9}
    path.write_text(json.dumps({"categories": categories, "results": [record]}))
    return path


def test_a_class_the_data_set_lacks_is_refused(syn16: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = _results(tmp_path, [{"id": 1, "name": "circle"}, {"id": 2, "name": "hexagon"}], 2)
    args = ["eval", "--voc", "--data", str(syn16), "--split", "test", "--results", str(results)]
    err = _error(args, capsys)
    assert str(results) in err
    assert "result 0: class 'hexagon' (category_id 2) is not a class of the data set (circle, square, triangle)" in err
    err = _error([*args, "--classes", "circle,triangle"], capsys)
    assert "'hexagon'" in err and "--classes: circle, triangle" in err

    devkit = tmp_path / "devkit"
    devkit.mkdir()
    (devkit / "comp4_det_test_circle.txt").write_text("")
    (devkit / "comp4_det_test_hexagon.txt").write_text("")
    args[-1] = str(devkit)
    err = _error(args, capsys)
    assert "comp4_det_test_hexagon.txt" in err and "not a class of the data set (circle, square, triangle)" in err


def test_classes_are_matched_by_name(syn16: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file whose ids are another order of the classes: a triangle is a triangle whatever its id."""
    split = read_split(syn16, "test")
    truth = parse_voc_xml(syn16 / "Annotations" / f"{split[0]}.xml").objects[0]
    x1, y1, x2, y2 = truth.xyxy
    categories = [{"id": 7, "name": "triangle"}, {"id": 8, "name": "circle"}, {"id": 9, "name": "square"}]
    path = tmp_path / "results.json"
    record = {"image_id": split[0], "category_id": 7 if truth.name == "triangle" else 8, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": 0.9}
    path.write_text(json.dumps({"categories": categories, "results": [record]}))
    assert _eval_voc(syn16, path, capsys)["per_class"][truth.name] > 0


def test_coco_results_are_matched_to_the_ground_truth_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt = tmp_path / "instances_val.json"
    gt.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 64}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0}],
        "categories": [{"id": 4, "name": "circle"}, {"id": 5, "name": "square"}],
    }))  # fmt: skip
    args = ["eval", "--coco", "--gt", str(gt), "--json", "-"]
    square = _results(tmp_path, CATEGORIES, 2, image_id=1)  # square is 2 in the file, 5 in the ground truth
    capsys.readouterr()
    assert main([*args, "--results", str(square)]) == 0
    assert json.loads(capsys.readouterr().out)["AP50"] == pytest.approx(1.0)
    triangle = _results(tmp_path, CATEGORIES, 3, image_id=1)
    err = _error([*args, "--results", str(triangle)], capsys)
    assert "result 0: class 'triangle' (category_id 3) is not a category of the ground truth (circle, square)" in err


def test_a_name_given_twice_by_the_ground_truth_is_ambiguous() -> None:
    found = results_io.ResultsFile([{"image_id": 1, "category_id": 2, "bbox": BOX, "score": 0.5}], {2: "square"})
    with pytest.raises(DataError, match=r"result 0: class 'square' \(category_id 2\) is ambiguous: .* ids \[5, 6\]"):
        found.by_name({"square": [5, 6]}, "the ground truth", "r.json")
    assert found.by_name({"square": [5]}, "the ground truth", "r.json")[0]["category_id"] == 5


@pytest.mark.parametrize(
    ("categories", "words"),
    [
        ({"1": "circle"}, "categories must be a JSON list"),
        ([{"id": 1}], "categories[0]: expected"),
        ([{"id": "1", "name": "circle"}], "categories[0]: expected"),
        ([{"id": 1, "name": "circle"}, {"id": 1, "name": "square"}], "category id 1 is listed twice"),
        ([{"id": 1, "name": " "}], "categories[0]: empty class name"),
        ([{"id": 3, "name": "triangle"}], "result 0: category_id 1 is not in the file's categories (3 triangle)"),
    ],
)
def test_bad_category_lists_are_one_line_errors(categories: object, words: str) -> None:
    data = {"categories": categories, "results": [{"image_id": 1, "category_id": 1, "bbox": BOX, "score": 0.5}]}
    with pytest.raises(DataError) as error:
        results_io.check_results_file(data, "r.json")
    assert words in str(error.value) and "\n" not in str(error.value)


def test_convert_keeps_the_class_order_of_the_source(
    syn16: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """syn16's test split, the first split read, has no square; the copies still number circle, square, triangle."""
    assert main(["data", "convert", str(syn16), str(tmp_path / "yolo"), "--to", "yolo"]) == 0
    assert main(["data", "convert", str(syn16), str(tmp_path / "coco"), "--to", "coco"]) == 0
    for copy in (tmp_path / "yolo", tmp_path / "coco"):
        for split in ("test", "train"):
            assert open_index(copy, split).class_names[1:] == SYNTH_CLASSES
    instances = json.loads((tmp_path / "coco" / "annotations" / "instances_test.json").read_text())
    assert [{"id": c["id"], "name": c["name"]} for c in instances["categories"]] == CATEGORIES
    assert main(["data", "convert", str(tmp_path / "coco"), str(tmp_path / "back"), "--to", "yolo"]) == 0
    assert open_index(tmp_path / "back", "test").class_names[1:] == SYNTH_CLASSES


def test_convert_to_voc_says_when_the_class_order_is_lost(
    syn16: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "yolo"
    assert main(["data", "convert", str(syn16), str(source), "--to", "yolo"]) == 0
    data_yaml = source / "data.yaml"
    data_yaml.write_text(data_yaml.read_text().replace('"circle"', '"zcircle"'))  # class 0, first in the source
    capsys.readouterr()
    assert main(["data", "convert", str(source), str(tmp_path / "voc"), "--to", "voc"]) == 0
    err = capsys.readouterr().err
    assert "VOC keeps no class order" in err and "(zcircle, square, triangle)" in err
    assert open_index(tmp_path / "voc", "train").class_names[1:] == ("square", "triangle", "zcircle")
