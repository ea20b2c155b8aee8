"""`ssd data synth` and `ssd data check` through the real entry point: output, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssdcli.cli.app import main
from ssdcli.data.check import check_dataset, near_duplicate_pairs, size_histogram
from ssdcli.data.formats.voc import load_voc

BCCD = Path(__file__).resolve().parents[2] / "shared" / "data" / "bccd" / "BCCD"


def _one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), captured.err
    assert "Traceback" not in captured.err + captured.out
    for word in words:
        assert word in lines[0]
    return lines[0]


def test_synth_voc_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shapes"
    assert main(["data", "synth", str(out), "--images", "20", "--seed", "3"]) == 0
    said = capsys.readouterr().out
    assert "wrote 20 images" in said and "14 train, 3 val, 3 test, 17 trainval" in said
    assert (out / "ImageSets" / "Main" / "trainval.txt").read_text().count("\n") == 17
    assert main(["data", "check", str(out)]) == 0
    captured = capsys.readouterr()
    for word in ("circle", "square", "triangle", "train", "val", "test", "no problems found"):
        assert word in captured.out
    assert captured.err == ""


def test_synth_coco_then_check_root_and_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shapes"
    assert main(["data", "synth", str(out), "--format", "coco", "--images", "10", "--size", "96"]) == 0
    capsys.readouterr()
    data = json.loads((out / "annotations" / "instances_train.json").read_text())
    assert [c["name"] for c in data["categories"]] == ["circle", "square", "triangle"]
    assert all(image["width"] == 96 for image in data["images"])
    assert main(["data", "check", str(out), "--split", "val"]) == 0
    assert "val" in capsys.readouterr().out
    assert main(["data", "check", str(out / "annotations" / "instances_test.json"), "--images"]) == 0


def test_synth_refuses_a_non_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    assert main(["data", "synth", str(out)]) == 2
    _one_line_error(capsys, str(out), "not empty")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    "args", [["--format", "yolo"], ["--images", "2"], ["--size", "8"], ["--images", "x"]]
)
def test_synth_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    assert main(["data", "synth", str(tmp_path / "out"), *args]) == 2
    _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_check_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 2
    _one_line_error(capsys, str(tmp_path / "nowhere"))


def test_check_wrong_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shapes"
    assert main(["data", "synth", str(out), "--images", "5"]) == 0
    capsys.readouterr()
    assert main(["data", "check", str(out), "--format", "coco"]) == 2
    _one_line_error(capsys, str(out), "instances_")
    assert main(["data", "check", str(out), "--split", "nope"]) == 2
    _one_line_error(capsys, "nope.txt")


def test_check_corrupt_image_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shapes"
    assert main(["data", "synth", str(out), "--images", "5"]) == 0
    capsys.readouterr()
    image = out / "JPEGImages" / "000002.jpg"
    image.write_bytes(b"broken")
    assert main(["data", "check", str(out), "--strict"]) == 1
    captured = capsys.readouterr()
    assert "do not decode" in captured.out and "000002.jpg" in captured.out
    assert main(["data", "check", str(out), "--no-images", "--strict"]) == 1
    captured = capsys.readouterr()
    assert "unreadable header" in captured.out and "000002.jpg" in captured.out
    (out / "JPEGImages" / "000003.jpg").unlink()
    assert main(["data", "check", str(out)]) == 2
    _one_line_error(capsys, "000003.jpg")


def test_check_decode_finds_an_image_that_does_not_decode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shapes"
    assert main(["data", "synth", str(out), "--images", "5"]) == 0
    image = out / "JPEGImages" / "000001.jpg"
    image.write_bytes(image.read_bytes()[:30])  # a JPEG header, then nothing
    capsys.readouterr()
    assert main(["data", "check", str(out), "--strict"]) == 1
    captured = capsys.readouterr()
    assert "do not decode" in captured.out and "000001.jpg" in captured.out
    assert captured.err.startswith("warning:")


def test_check_bccd_reports_its_warts(capsys: pytest.CaptureFixture[str]) -> None:
    if not BCCD.is_dir():
        pytest.skip("BCCD data set not available")
    assert main(["data", "check", str(BCCD), "--split", "trainval"]) == 0
    captured = capsys.readouterr()
    assert "zero-area boxes dropped" in captured.out and "BloodImage_00338.xml" in captured.out
    assert "near-duplicate" in captured.out
    assert captured.err.startswith("warning:") and len(captured.err.strip().splitlines()) == 1
    assert main(["data", "check", str(BCCD), "--split", "test", "--strict"]) == 1


def test_check_report_on_bccd_against_independent_counts() -> None:
    if not BCCD.is_dir():
        pytest.skip("BCCD data set not available")
    report = check_dataset(BCCD)
    assert [s.split for s in report.splits] == ["train", "val", "trainval", "test"]
    assert report.class_names == ("Platelets", "RBC", "WBC")
    test = report.splits[-1]
    index = load_voc(BCCD, "test")
    boxes = [b for r in index.records for b in r.boxes]
    sides = [((b[2] - b[0]) * (b[3] - b[1])) ** 0.5 for b in boxes]
    edges = [0, 16, 32, 64, 128, 256, float("inf")]
    expected = tuple(sum(lo <= s < hi for s in sides) for lo, hi in zip(edges, edges[1:]))
    assert test.size_histogram == expected and sum(expected) == test.objects == 945
    # Near-duplicates: same class, IoU >= 0.9, counted with plain Python.
    pairs = 0
    for split in ("train", "val", "test"):
        for record in load_voc(BCCD, split).records:
            b, labels = record.boxes.tolist(), record.labels.tolist()
            for i in range(len(b)):
                for j in range(i + 1, len(b)):
                    iw = max(0.0, min(b[i][2], b[j][2]) - max(b[i][0], b[j][0]))
                    ih = max(0.0, min(b[i][3], b[j][3]) - max(b[i][1], b[j][1]))
                    union = (b[i][2] - b[i][0]) * (b[i][3] - b[i][1]) + (b[j][2] - b[j][0]) * (b[j][3] - b[j][1])
                    if labels[i] == labels[j] and iw * ih / (union - iw * ih) >= 0.9:
                        pairs += 1
    found = sum(p.count for p in report.problems if p.what.startswith("near-duplicate") and p.split != "trainval")
    assert found == pairs == 7
    assert not any(p.what.startswith("images in both") for p in report.problems)


def test_size_histogram_and_near_duplicates_known_answers() -> None:
    import numpy as np

    from ssdcli.data.records import ImageRecord

    boxes = np.array([[0, 0, 10, 10], [0, 0, 16, 16], [0, 0, 40, 40], [0, 0, 300, 300], [1, 0, 41, 40]], np.float32)
    assert size_histogram(boxes) == (1, 1, 2, 0, 0, 1)  # sides 10, 16, 40, 300, 40
    record = ImageRecord(0, "x", Path("x.jpg"), 400, 400, boxes, np.array([1, 1, 2, 1, 2]), np.zeros(5, bool))
    assert near_duplicate_pairs(record) == 1  # boxes 2 and 4: IoU 39*40 / (1600 + 1600 - 1560) = 0.951


def test_check_lists_what_training_would_trip_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A truncated JPEG, an undecodable file, a wrong <size>, an empty split and a file name used twice: each is
    listed with its split and file, in the table and in the JSON report."""
    from messy_files import set_voc_size, smooth_rgb, truncate, undecodable_jpeg, write_jpeg
    from ssdcli.data.dataset import open_index

    out = tmp_path / "shapes"
    assert main(["data", "synth", str(out), "--images", "30"]) == 0
    records = open_index(out, "train").records
    truncate(records[0].path, cut=1024)
    undecodable_jpeg(records[1].path)
    set_voc_size(out / "Annotations" / f"{records[2].source_id}.xml", 200, 150)
    write_jpeg(records[3].path, smooth_rgb(160, 160), orientation=6)
    (out / "ImageSets" / "Main" / "empty.txt").write_text("")
    report = tmp_path / "report.json"
    capsys.readouterr()
    assert main(["data", "check", str(out), "--json", str(report)]) == 2  # the empty split cannot be used
    table = capsys.readouterr().out
    for words in ("truncated", "do not decode", "size differs", "split cannot be used"):
        assert words in table, words
    data = json.loads(report.read_text())
    found = {(p["split"], p["problem"].split(" (")[0]): p["files"] for p in data["problems"]}
    assert found[("train", "truncated images")] == [str(records[0].path)]
    assert found[("train", "images that do not decode")] == [str(records[1].path)]
    assert found[("train", "images whose size differs from the annotation")] == [str(records[2].path)]
    assert found[("train", "images with an EXIF orientation tag")] == [str(records[3].path)]
    assert any(split == "empty" for split, _ in found)
    assert data["decoded"] is True
    assert main(["data", "check", str(out), "--json", str(report)]) == 2  # never overwrites a report
    assert "exists" in capsys.readouterr().err
