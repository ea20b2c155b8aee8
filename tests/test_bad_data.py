"""Data that cannot train or be scored as given is said before the first step: splits without a usable object,
labels written in pixels or missing, evaluation ids pycocotools refuses, split files that are not UTF-8 text,
non-finite VOC sizes; and YOLO data.yaml runs validate on their `val` split."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssdcli.cli.app import main
from ssdcli.config import TrainConfig
from ssdcli.data.check import check_dataset
from ssdcli.data.dataset import is_split_file, open_index
from ssdcli.data.synth import write_synth
from ssdcli.engine.checkpoint import load_checkpoint
from ssdcli.engine.train.inputs import open_data
from ssdcli.errors import DataError

QUICK = ["--epochs", "1", "--batch-size", "2", "--max-steps-per-epoch", "1", "--device", "cpu", "--workers", "0"]


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def _yolo(root: Path, train: list[str], val: list[str], yaml: str = "names: [cat, dog]\n") -> Path:
    """A YOLO set with data.yaml: one 64 x 64 image per label text (None: no label file) in each split."""
    for split, labels in (("train", train), ("val", val)):
        for k, text in enumerate(labels):
            image = root / "images" / split / f"{split}{k}.jpg"
            image.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(image), np.full((64, 64, 3), 40 + 30 * k, np.uint8))
            if text is not None:
                label = root / "labels" / split / f"{split}{k}.txt"
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text(text)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\n" + yaml)
    return root / "data.yaml"


NORMALISED = ["0 0.5 0.5 0.4 0.4\n", "1 0.3 0.3 0.3 0.2\n", "0 0.6 0.4 0.5 0.5\n1 0.2 0.7 0.2 0.3\n", "1 0.5 0.5 0.9 0.9\n"]


def _problems(report: object, split: str) -> list[str]:
    return [p.what for p in report.problems if p.split == split]  # type: ignore[attr-defined]


def test_yolo_without_labels_folder_is_an_error_before_the_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _yolo(tmp_path / "set", [None] * 4, [None] * 2)
    out = tmp_path / "runs"
    assert main(["train", "--data", str(data), "--out", str(out), *QUICK]) == 2
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "no object to train on" in errors[0], errors
    assert str(tmp_path / "set" / "labels" / "train" / "train0.txt") in errors[0]
    assert not out.exists()

    assert main(["data", "check", str(data)]) == 0
    captured = capsys.readouterr()
    assert "no problems found" not in captured.out
    report = check_dataset(data)
    for split in ("train", "val"):
        found = _problems(report, split)
        assert any(what.startswith("images without a label file") for what in found), found
        assert any(what.startswith("no object to train on") for what in found), found


@pytest.mark.slow
def test_labels_in_pixels_are_named_by_check_and_warned_before_the_first_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Pixels on a 64 px image: boxes near the origin reach outside and are clipped, the others lie wholly outside.
    pixels = ["0 10 10 30 30\n", "1 40 40 20 20\n", "0 12 20 30 40\n1 50 50 10 10\n", "1 30 30 12 12\n"]
    data = _yolo(tmp_path / "set", pixels, NORMALISED[:2])
    report = check_dataset(data)
    assert any("pixels" in what for what in _problems(report, "train")), report.problems
    assert not any("pixels" in what for what in _problems(report, "val"))

    out = tmp_path / "runs"
    assert main(["train", "--data", str(data), "--out", str(out), *QUICK, "--eval-every", "0"]) == 0
    captured = capsys.readouterr()
    warning = next(line for line in captured.err.splitlines() if "pixels" in line)
    assert warning.startswith("warning:") and "5 label lines with coordinates above 1" in warning
    assert "epoch 1" in captured.out


def test_yolo_all_pixel_labels_are_an_error_that_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _yolo(tmp_path / "set", ["0 40 40 20 20\n"] * 4, NORMALISED[:2])
    out = tmp_path / "runs"
    assert main(["train", "--data", str(data), "--out", str(out), *QUICK]) == 2
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "no object to train on" in errors[0] and "pixels" in errors[0], errors
    assert not out.exists()


def _coco(root: Path) -> Path:
    write_synth(root, format="coco", images=12, seed=0, image_size=64)
    return root


def _edit_json(path: Path, change: object) -> None:
    data = json.loads(path.read_text())
    change(data)  # type: ignore[operator]
    path.write_text(json.dumps(data))


def test_all_crowd_coco_training_split_is_an_error_before_the_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _coco(tmp_path / "coco")
    train_json = root / "annotations" / "instances_train.json"
    _edit_json(train_json, lambda gt: [a.update(iscrowd=1) for a in gt["annotations"]])
    out = tmp_path / "runs"
    assert main(["train", "--data", str(root), "--out", str(out), *QUICK]) == 2
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "no object to train on" in errors[0] and "crowd" in errors[0], errors
    assert not out.exists()
    assert any("crowd" in what for what in _problems(check_dataset(root), "train"))


def test_validation_split_with_only_difficult_objects_says_best_pt_cannot_be_chosen(tmp_path: Path) -> None:
    root = tmp_path / "voc"
    write_synth(root, format="voc", images=12, seed=0, image_size=64)
    for image_id in (root / "ImageSets" / "Main" / "val.txt").read_text().split():
        xml = root / "Annotations" / f"{image_id}.xml"
        xml.write_text(xml.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>"))
    config = TrainConfig().updated(data=root, out=tmp_path / "runs", eval_every=1)
    prepared = open_data(config, root, lambda event: None)
    assert prepared.val is not None
    assert any("best.pt cannot be chosen" in note and "difficult" in note for note in prepared.notes), prepared.notes
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda gt: gt["annotations"][1].update(id=gt["annotations"][0]["id"]), "appears more than once"),
        (lambda gt: gt["annotations"][0].pop("id"), "annotations[0] has no 'id'"),
        (lambda gt: gt["images"].append(dict(gt["images"][0])), "appears more than once"),
    ],
    ids=["duplicate-id", "missing-id", "duplicate-image-id"],
)
def test_validation_ids_the_evaluator_refuses_are_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: object, words: str
) -> None:
    root = _coco(tmp_path / "coco")
    val_json = root / "annotations" / "instances_val.json"
    _edit_json(val_json, change)
    out = tmp_path / "runs"
    assert main(["train", "--data", str(root), "--out", str(out), *QUICK, "--eval-every", "1"]) == 2
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and words in errors[0] and str(val_json) in errors[0], errors
    assert not out.exists()
    found = _problems(check_dataset(root), "val")
    assert any(what.startswith("cannot be evaluated") and words in what for what in found), found


def _voc(root: Path) -> Path:
    write_synth(root, format="voc", images=12, seed=0, image_size=64)
    return root


def test_split_file_with_a_byte_order_mark_reads_as_without(tmp_path: Path) -> None:
    root = _voc(tmp_path / "voc")
    split_file = root / "ImageSets" / "Main" / "train.txt"
    ids = split_file.read_text().split()
    split_file.write_bytes(b"\xef\xbb\xbf" + split_file.read_bytes())
    assert [record.source_id for record in open_index(root, "train").records] == ids


def test_yolo_files_with_a_byte_order_mark_read_as_without(tmp_path: Path) -> None:
    data = _yolo(tmp_path / "set", NORMALISED, NORMALISED[:2])
    label = tmp_path / "set" / "labels" / "train" / "train0.txt"
    label.write_bytes(b"\xef\xbb\xbf" + label.read_bytes())
    data.write_bytes(b"\xef\xbb\xbf" + data.read_bytes())
    index = open_index(data, "train")
    assert index.class_names == ("background", "cat", "dog") and index.records[0].labels.tolist() == [1]


@pytest.mark.parametrize("kind", ["voc-split", "yolo-label", "coco-json"])
def test_a_file_that_is_not_utf8_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    if kind == "voc-split":
        data = _voc(tmp_path / "voc")
        bad = data / "ImageSets" / "Main" / "train.txt"
    elif kind == "yolo-label":
        data = _yolo(tmp_path / "set", NORMALISED, NORMALISED[:2])
        bad = tmp_path / "set" / "labels" / "train" / "train1.txt"
    else:
        data = _coco(tmp_path / "coco")
        bad = data / "annotations" / "instances_train.json"
        bad.write_text(json.dumps(json.loads(bad.read_text()), indent=1))
    bad.write_bytes(bad.read_bytes().replace(b"\n", b"\n\xff", 1))
    out = tmp_path / "runs"
    assert main(["train", "--data", str(data), "--out", str(out), *QUICK]) == 2
    err = capsys.readouterr().err
    errors = _error_lines(err)
    assert len(errors) == 1 and str(bad) in errors[0] and "not UTF-8 text: byte 0xff on line 2" in errors[0], err
    assert "Traceback" not in err and "unexpected" not in err
    assert not out.exists()


@pytest.mark.parametrize("tag", ["width", "xmin"])
def test_a_non_finite_voc_number_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tag: str
) -> None:
    data = _voc(tmp_path / "voc")
    image_id = (data / "ImageSets" / "Main" / "train.txt").read_text().split()[0]
    xml = data / "Annotations" / f"{image_id}.xml"
    text = xml.read_text()
    start = text.index(f"<{tag}>") + len(tag) + 2
    xml.write_text(text[:start] + "nan" + text[text.index(f"</{tag}>", start) :])
    out = tmp_path / "runs"
    assert main(["train", "--data", str(data), "--out", str(out), *QUICK]) == 2
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and str(xml) in errors[0] and f"<{tag}> is not a finite number: 'nan'" in errors[0]
    assert not out.exists()


def test_yolo_nc_must_agree_with_names(tmp_path: Path) -> None:
    data = _yolo(tmp_path / "set", NORMALISED, NORMALISED[:2], yaml="nc: 3\nnames: [cat, dog]\n")
    with pytest.raises(DataError, match="nc is 3 but there are 2 class names") as caught:
        open_index(data, "train")
    assert caught.value.path == str(data) or Path(str(caught.value.path)) == data
    data.write_text("path: .\ntrain: images/train\nval: images/val\nnc: 2\n")
    assert open_index(data, "train").class_names == ("background", "0", "1")


def test_yolo_class_ids_written_as_whole_floats_are_read(tmp_path: Path) -> None:
    data = _yolo(tmp_path / "set", ["1.0 0.5 0.5 0.4 0.4\n", *NORMALISED[1:]], NORMALISED[:2])
    assert open_index(data, "train").records[0].labels.tolist() == [2]
    label = tmp_path / "set" / "labels" / "train" / "train0.txt"
    label.write_text("0 0.5 0.5 0.4 0.4\n1.5 0.5 0.5 0.4 0.4\n")
    with pytest.raises(DataError, match=r"line 2: class id 1.5 is not a whole number") as caught:
        open_index(data, "train")
    assert Path(str(caught.value.path)) == label


def test_yolo_data_yaml_is_not_a_split_file(tmp_path: Path) -> None:
    data = _yolo(tmp_path / "set", NORMALISED, NORMALISED[:2])
    assert not is_split_file(data)
    assert is_split_file(tmp_path / "instances_train.json")


@pytest.mark.slow
def test_yolo_data_yaml_training_validates_on_its_val_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _yolo(tmp_path / "set", NORMALISED, NORMALISED[:2])
    out = tmp_path / "runs"
    assert main(["train", "--data", str(data), "--out", str(out), *QUICK, "--eval-every", "1"]) == 0
    captured = capsys.readouterr()
    assert "no validation" not in captured.err
    rows = list(csv.DictReader((out / "1" / "metrics.csv").open()))
    assert len(rows) == 1 and math.isfinite(float(rows[0]["map50"]))
    best = load_checkpoint(out / "1" / "best.pt")
    assert best.best_metric == pytest.approx(float(rows[0]["map50"]))
