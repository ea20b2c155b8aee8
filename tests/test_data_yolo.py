"""YOLO-format data sets (data.yaml or images/ + labels/), and `ssd data convert` between VOC, COCO and YOLO."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssdcli.cli.app import main
from ssdcli.data.convert import convert_dataset
from ssdcli.data.dataset import open_index
from ssdcli.data.formats import detect_format
from ssdcli.data.formats import voc as voc_format
from ssdcli.data.formats.yolo import label_file
from ssdcli.data.synth import write_synth
from ssdcli.errors import DataError


def _image(path: Path, width: int = 200, height: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 90, np.uint8))
    return path


def _yolo_root(root: Path, yaml: str | None = "names: [cat, dog]\n") -> Path:
    """Two splits; train: a.jpg with two objects, b.jpg without a label file (background), c.jpg with an empty one."""
    _image(root / "images" / "train" / "a.jpg")
    _image(root / "images" / "train" / "b.jpg")
    _image(root / "images" / "train" / "c.jpg")
    _image(root / "images" / "val" / "d.jpg")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.25 0.75 0.1 0.2\n")
    (root / "labels" / "train" / "c.txt").write_text("\n")
    (root / "labels" / "val" / "d.txt").write_text("1 0.5 0.5 1.0 1.0\n")
    if yaml is not None:
        (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\n" + yaml)
    return root


def test_yaml_layout_boxes_in_pixels(tmp_path: Path) -> None:
    root = _yolo_root(tmp_path / "set")
    for path in (root, root / "data.yaml"):
        assert detect_format(path).name == "yolo"
        index = open_index(path, "train")
        assert index.class_names == ("background", "cat", "dog") and index.format == "yolo"
        by_name = {r.path.name: r for r in index.records}
        assert set(by_name) == {"a.jpg", "b.jpg", "c.jpg"}
        a = by_name["a.jpg"]
        # cx 0.5, cy 0.5, w 0.2, h 0.4 on 200 x 100 px -> x 80..120, y 30..70
        np.testing.assert_allclose(a.boxes, [[80, 30, 120, 70], [40, 65, 60, 85]], atol=1e-4)
        assert a.labels.tolist() == [1, 2] and (a.width, a.height) == (200, 100)
        assert by_name["b.jpg"].num_objects == 0 and by_name["c.jpg"].num_objects == 0  # background images


@pytest.mark.parametrize("names", ["names:\n  0: cat\n  1: dog\n", "names: [cat, dog]\n"])
def test_names_as_dict_or_list(tmp_path: Path, names: str) -> None:
    root = _yolo_root(tmp_path / "set", names)
    assert open_index(root, "val").class_names == ("background", "cat", "dog")


def test_root_without_yaml_splits_from_folders(tmp_path: Path) -> None:
    root = _yolo_root(tmp_path / "set", yaml=None)
    assert open_index(root, "train").class_names == ("background", "0", "1")
    (root / "classes.txt").write_text("cat\ndog\n")
    assert open_index(root, "val").class_names == ("background", "cat", "dog")
    assert open_index(root, "val", classes=["cat", "dog"]).records[0].labels.tolist() == [2]


def test_coordinates_outside_the_image_are_clipped_and_counted(tmp_path: Path) -> None:
    root = _yolo_root(tmp_path / "set")
    (root / "labels" / "train" / "a.txt").write_text("0 0.95 0.5 0.2 0.4\n0 1.5 0.5 0.2 0.2\n")
    index = open_index(root, "train")
    a = next(r for r in index.records if r.path.name == "a.jpg")
    np.testing.assert_allclose(a.boxes, [[170, 30, 200, 70]], atol=1e-4)
    assert index.warnings.clipped_boxes == 1 and index.warnings.zero_area_boxes == 1


@pytest.mark.parametrize(
    "line, words",
    [("0 0.5 0.5 0.2", "line 2: expected 'class cx cy w h'"), ("x 0.5 0.5 0.2 0.2", "line 2: not numbers"),
     ("7 0.5 0.5 0.2 0.2", "class id 7 is outside the 2 class names"),
     ("0 0.5 0.5 0.2 0.2 1.5", "line 2: the 6th column, a score, must be in [0, 1]"),
     ("0 0.5 0.5 0.2 0.2 x", "line 2: not numbers"),
     ("0 0.1 0.1 0.5 0.1 0.5 0.5", "segmentation polygon")],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str, words: str) -> None:
    root = _yolo_root(tmp_path / "set")
    label = root / "labels" / "train" / "a.txt"
    label.write_text("0 0.5 0.5 0.2 0.4\n" + line + "\n")
    with pytest.raises(DataError) as caught:
        open_index(root, "train")
    assert caught.value.path == str(label) and words in caught.value.message


def test_a_score_column_is_read_as_an_object(tmp_path: Path) -> None:
    """What ``ssd predict --save-conf`` writes: a 6th column, the score; each line is still one object."""
    root = _yolo_root(tmp_path / "set")
    label = root / "labels" / "train" / "a.txt"
    label.write_text("0 0.5 0.5 0.2 0.4 0.91234\n1 0.25 0.25 0.1 0.1 0.05\n")
    record = open_index(root, "train").records[0]
    assert record.labels.tolist() == [1, 2]
    assert record.boxes[1] == pytest.approx([0.2 * record.width, 0.2 * record.height, 0.3 * record.width, 0.3 * record.height])


def test_label_file_rule() -> None:
    assert label_file(Path("/d/images/train/x.jpg")) == Path("/d/labels/train/x.txt")
    assert label_file(Path("/d/train/images/x.png")) == Path("/d/train/labels/x.txt")


def _boxes_by_image(root: Path, split: str) -> dict[str, tuple[np.ndarray, list[str]]]:
    index = open_index(root, split)
    return {
        r.path.stem: (r.boxes, [index.class_names[int(label)] for label in r.labels]) for r in index.records
    }


def test_round_trip_voc_coco_yolo_voc_keeps_every_box(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    voc = tmp_path / "voc"
    write_synth(voc, format="voc", images=20, seed=3, image_size=96)
    assert main(["data", "convert", str(voc), str(tmp_path / "coco"), "--to", "coco"]) == 0
    assert main(["data", "convert", str(tmp_path / "coco"), str(tmp_path / "yolo"), "--to", "yolo"]) == 0
    assert main(["data", "convert", str(tmp_path / "yolo"), str(tmp_path / "back"), "--to", "voc"]) == 0
    assert detect_format(tmp_path / "coco").name == "coco" and detect_format(tmp_path / "yolo").name == "yolo"
    for split in ("train", "val", "test"):
        before, after = _boxes_by_image(voc, split), _boxes_by_image(tmp_path / "back", split)
        assert before.keys() == after.keys()
        for stem, (boxes, names) in before.items():
            np.testing.assert_allclose(after[stem][0], boxes, atol=0.01)  # YOLO's 6 decimals, VOC's 2
            assert after[stem][1] == names
    # VOC -> COCO keeps the COCO box convention: bbox [x, y, w, h] of the 0-based continuous box.
    data = json.loads((tmp_path / "coco" / "annotations" / "instances_train.json").read_text())
    first = open_index(voc, "train").records[0]
    image = next(i for i in data["images"] if i["file_name"] == first.path.name)
    bbox = next(a["bbox"] for a in data["annotations"] if a["image_id"] == image["id"])
    x1, y1, x2, y2 = first.boxes[0].tolist()
    assert bbox == pytest.approx([x1, y1, x2 - x1, y2 - y1])


def test_convert_flags_and_safety(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    voc = tmp_path / "voc"
    write_synth(voc, format="voc", images=10, seed=0, image_size=96)
    xml = next((voc / "Annotations").glob("*.xml"))
    xml.write_text(xml.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1))
    before = {p: p.read_bytes() for p in voc.rglob("*") if p.is_file()}
    assert main(["data", "convert", str(voc), str(tmp_path / "coco"), "--to", "coco"]) == 0
    assert "iscrowd 1" in capsys.readouterr().err
    crowd = [
        a for f in (tmp_path / "coco" / "annotations").glob("*.json") for a in json.loads(f.read_text())["annotations"]
        if a["iscrowd"]
    ]
    assert crowd, "the difficult object was not carried over as iscrowd"
    assert main(["data", "convert", str(voc), str(tmp_path / "yolo"), "--to", "yolo"]) == 0
    assert "left out" in capsys.readouterr().err
    # Never into the source, never into a non-empty folder without --force; the source is unchanged.
    assert main(["data", "convert", str(voc), str(voc / "out"), "--to", "coco"]) == 2
    assert main(["data", "convert", str(voc), str(tmp_path / "coco"), "--to", "coco"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["data", "convert", str(voc), str(tmp_path / "coco"), "--to", "coco", "--force"]) == 0
    assert {p: p.read_bytes() for p in voc.rglob("*") if p.is_file()} == before


def test_data_check_and_train_on_yolo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    voc = tmp_path / "voc"
    write_synth(voc, format="voc", images=30, seed=0, image_size=160)
    assert main(["data", "convert", str(voc), str(tmp_path / "yolo"), "--to", "yolo"]) == 0
    assert main(["data", "check", str(tmp_path / "yolo" / "data.yaml")]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "circle" in out
    args = ["train", "--data", str(tmp_path / "yolo"), "--out", str(tmp_path / "runs"), "--epochs", "1"]
    assert main(args + ["--batch-size", "4", "--max-steps-per-epoch", "2", "--workers", "0", "--device", "cpu"]) == 0
    assert (tmp_path / "runs" / "1" / "last.pt").is_file()


def test_data_check_names_a_file_name_used_by_two_images(tmp_path: Path) -> None:
    from ssdcli.data.check import check_dataset

    root = _yolo_root(tmp_path / "set")
    assert not [p for p in check_dataset(root).problems if "file names" in p.what]
    _image(root / "images" / "val" / "a.jpg", width=120)  # another picture under a train image's name
    (root / "labels" / "val" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    shared = [p for p in check_dataset(root).problems if "file names" in p.what]
    assert len(shared) == 1 and sorted(Path(f).parent.name for f in shared[0].files) == ["train", "val"]


def _interrupt_on_call(calls: int, write: Callable[..., None]) -> Callable[..., None]:
    """``write`` that raises KeyboardInterrupt (Ctrl-C) on its ``calls``-th call, after the earlier ones wrote."""
    count = [0]

    def interrupted(*args: object) -> None:
        count[0] += 1
        if count[0] == calls:
            raise KeyboardInterrupt
        write(*args)

    return interrupted


def test_convert_interrupted_leaves_the_output_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_synth(tmp_path / "coco", format="coco", images=8, seed=1, image_size=64).root
    out = write_synth(tmp_path / "voc", format="voc", images=5, seed=2, image_size=64).root
    (out / "mine.txt").write_text("keep")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    monkeypatch.setattr(voc_format, "copy_image", _interrupt_on_call(4, voc_format.copy_image))
    with pytest.raises(KeyboardInterrupt):
        convert_dataset(source, "voc", out, force=True)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "voc"]  # no staging folder left
    monkeypatch.undo()
    convert_dataset(source, "voc", out, force=True)
    assert (out / "mine.txt").read_text() == "keep" and (out / "JPEGImages" / "000007.jpg").is_file()
