"""VOC adapter: the real BCCD data set against a plain ElementTree scan, hand-written VOC folders with every kind
of bad input, and a DataLoader over BCCD."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ssdcli.data.collate import collate_detections
from ssdcli.data.dataset import DetectionDataset, open_index
from ssdcli.data.formats.voc import load_voc
from ssdcli.errors import DataError, UsageError

BCCD = Path(__file__).resolve().parents[2] / "shared" / "data" / "bccd" / "BCCD"


def _bccd() -> Path:
    if not BCCD.is_dir():
        pytest.skip("BCCD data set not available")
    return BCCD


# --- a plain scan of the BCCD files, written independently of the adapter ---------------------------------------


def _scan(root: Path, split: str) -> dict[str, object]:
    """Counts from ElementTree alone: VOC 1-based inclusive coordinates, degenerate = xmin == xmax or ymin == ymax,
    outside = any coordinate beyond 1..width / 1..height."""
    ids = [line.split()[0] for line in (root / "ImageSets" / "Main" / f"{split}.txt").read_text().splitlines() if line]
    per_class: Counter[str] = Counter()
    degenerate = outside = 0
    first_boxes = None
    for image_id in ids:
        tree = ET.parse(root / "Annotations" / f"{image_id}.xml").getroot()
        width, height = int(tree.findtext("size/width")), int(tree.findtext("size/height"))
        boxes = []
        for obj in tree.iter("object"):
            xmin, ymin, xmax, ymax = (float(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax"))
            if xmin == xmax or ymin == ymax:
                degenerate += 1
                continue
            if xmin < 1 or ymin < 1 or xmax > width or ymax > height:
                outside += 1
            per_class[obj.findtext("name")] += 1
            boxes.append([xmin - 1, ymin - 1, xmax, ymax])
        if first_boxes is None:
            first_boxes = np.array(boxes, dtype=np.float32)
    return {"ids": ids, "per_class": per_class, "degenerate": degenerate, "outside": outside, "first": first_boxes}


@pytest.mark.parametrize("split", ["train", "val", "trainval", "test"])
def test_bccd_matches_plain_scan(split: str) -> None:
    root = _bccd()
    expected = _scan(root, split)
    index = load_voc(root, split)
    assert index.format == "voc" and index.split == split
    assert index.class_names == ("background", "Platelets", "RBC", "WBC")
    assert index.category_ids == (0, 1, 2, 3)
    assert [r.source_id for r in index.records] == expected["ids"]
    assert [r.image_id for r in index.records] == list(range(len(index.records)))
    found = Counter()
    for record in index.records:
        for label in record.labels:
            found[index.class_names[label]] += 1
    assert found == expected["per_class"]
    assert index.warnings.zero_area_boxes == expected["degenerate"]
    assert index.warnings.clipped_boxes == expected["outside"]
    np.testing.assert_array_equal(index.records[0].boxes, expected["first"])
    first = index.records[0]
    assert (first.width, first.height) == (640, 480)
    assert first.path == root / "JPEGImages" / f"{first.source_id}.jpg"
    assert first.boxes.dtype == np.float32 and first.labels.dtype == np.int64 and first.ignore.dtype == bool


def test_bccd_warts_known_counts() -> None:
    """The annotation problems of this copy of BCCD, as documented in docs/data.md."""
    root = _bccd()
    splits = {s: load_voc(root, s) for s in ("train", "val", "test")}
    assert sum(len(i) for i in splits.values()) == 364
    zero = sorted(f for i in splits.values() for f in i.warnings.zero_area_files)
    assert [Path(f).name for f in zero] == ["BloodImage_00338.xml", "BloodImage_00343.xml"]
    assert sum(i.warnings.zero_area_boxes for i in splits.values()) == 2
    assert sum(i.warnings.clipped_boxes for i in splits.values()) == 0
    assert sum(i.warnings.duplicate_ids for i in splits.values()) == 0
    summary = splits["train"].warnings.summary()
    assert summary is not None and "1 zero-area boxes dropped (BloodImage_00343.xml)" in summary


def test_bccd_index_decodes_no_image(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image was decoded while indexing")

    monkeypatch.setattr(cv2, "imread", refuse)
    monkeypatch.setattr(cv2, "imdecode", refuse)
    from PIL import Image

    monkeypatch.setattr(Image, "open", refuse)
    index = open_index(_bccd(), "trainval")
    assert len(index) == 292


def test_dataloader_over_bccd_with_two_workers() -> None:
    index = load_voc(_bccd(), "val")
    small = dataclasses.replace(index, records=index.records[:6])
    loader = DataLoader(
        DetectionDataset(small, image_size=96, train=True), batch_size=3, num_workers=2, collate_fn=collate_detections
    )
    batches = list(loader)
    assert len(batches) == 2
    for batch in batches:
        assert batch.images.shape == (3, 3, 96, 96) and batch.images.dtype == torch.float32
        assert batch.boxes.shape[:2] == batch.classes.shape and batch.boxes.shape[2] == 4
        assert ((batch.classes == -1) | ((batch.classes >= 1) & (batch.classes <= 3))).all()
        real = batch.classes >= 1
        assert (batch.boxes[real][:, 2:] > batch.boxes[real][:, :2]).all()
        assert (batch.boxes >= 0).all() and (batch.boxes <= 1).all()
        assert batch.orig_sizes.tolist() == [[480, 640]] * 3
    assert torch.cat([b.image_ids for b in batches]).tolist() == list(range(6))


def test_eval_dataset_boxes_are_record_boxes_normalised() -> None:
    index = load_voc(_bccd(), "test")
    image, target = DetectionDataset(index, image_size=128, train=False)[5]
    record = index.records[5]
    assert image.shape == (3, 128, 128)
    expected = record.boxes / np.array([record.width, record.height] * 2, dtype=np.float32)
    np.testing.assert_allclose(target["boxes"].numpy(), expected, rtol=0, atol=1e-6)
    assert target["labels"].tolist() == record.labels.tolist()
    assert target["image_id"] == 5 and target["orig_size"] == (480, 640)


# --- hand-written VOC folders ----------------------------------------------------------------------------------


def _xml(filename: str, objects: list[tuple[str, tuple[float, float, float, float], int]], size=(64, 48)) -> str:
    size_xml = "" if size is None else f"<size><width>{size[0]}</width><height>{size[1]}</height></size>"
    body = "".join(
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b, difficult in objects
    )
    return f"<annotation><filename>{filename}</filename>{size_xml}{body}</annotation>"


def _voc(tmp_path: Path, items: dict[str, list], split_ids: list[str] | None = None, size=(64, 48)) -> Path:
    root = tmp_path / "voc"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for image_id, objects in items.items():
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), np.full((48, 64, 3), 100, np.uint8))
        (root / "Annotations" / f"{image_id}.xml").write_text(_xml(f"{image_id}.jpg", objects, size))
    ids = list(items) if split_ids is None else split_ids
    (root / "ImageSets" / "Main" / "train.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def test_difficult_is_ignore_and_classes_sorted(tmp_path: Path) -> None:
    items = {"a": [("dog", (1, 1, 10, 10), 0), ("cat", (5, 5, 20, 30), 1)], "b": [("cat", (2, 3, 4, 5), 0)]}
    root = _voc(tmp_path, items)
    index = load_voc(root, "train")
    assert index.class_names == ("background", "cat", "dog")
    a = index.records[0]
    assert a.labels.tolist() == [2, 1] and a.ignore.tolist() == [False, True]
    np.testing.assert_array_equal(a.boxes, [[0, 0, 10, 10], [4, 4, 20, 30]])


def test_given_classes_order_and_background_prefix(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": [("dog", (1, 1, 10, 10), 0), ("cat", (5, 5, 20, 30), 0)]})
    index = load_voc(root, "train", classes=["background", "dog", "cat", "bird"])
    assert index.class_names == ("background", "dog", "cat", "bird")
    assert index.records[0].labels.tolist() == [1, 2]
    with pytest.raises(UsageError):
        load_voc(root, "train", classes=["dog", "dog"])


def test_unknown_class_names_the_xml(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": [("dgo", (1, 1, 10, 10), 0)]})
    with pytest.raises(DataError) as caught:
        load_voc(root, "train", classes=["dog", "cat"])
    assert caught.value.path == str(root / "Annotations" / "a.xml")
    assert "'dgo'" in caught.value.message and "did you mean 'dog'" in caught.value.message


def test_clipping_zero_area_and_duplicate_ids_are_counted(tmp_path: Path) -> None:
    objects = [
        ("dog", (-5, 2, 30, 60), 0),  # left and bottom outside: clipped
        ("dog", (70, 10, 90, 20), 0),  # wholly right of the 64 px wide image: zero area after clipping
        ("dog", (7, 7, 7, 20), 0),  # xmin == xmax: zero area as written
        ("dog", (10, 10, 20, 20), 0),  # fine
    ]
    root = _voc(tmp_path, {"a": objects, "b": [("dog", (1, 1, 5, 5), 0)]}, split_ids=["a", "b", "a"])
    index = load_voc(root, "train")
    assert len(index) == 2
    w = index.warnings
    assert (w.clipped_boxes, w.zero_area_boxes, w.duplicate_ids) == (1, 2, 1)
    assert w.clipped_files == (str(root / "Annotations" / "a.xml"),)
    np.testing.assert_array_equal(index.records[0].boxes, [[0, 1, 30, 48], [9, 9, 20, 20]])
    line = w.summary()
    assert line is not None and "1 boxes reaching outside" in line and "2 zero-area" in line and "1 repeated" in line


def test_size_read_from_header_when_xml_has_none(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": [("dog", (1, 1, 10, 10), 0)]}, size=None)
    record = load_voc(root, "train").records[0]
    assert (record.width, record.height) == (64, 48)


def _error(call, path: Path) -> DataError:
    with pytest.raises(DataError) as caught:
        call()
    assert caught.value.path == str(path), caught.value
    assert str(path) in str(caught.value)
    return caught.value


def test_missing_image(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": [("dog", (1, 1, 10, 10), 0)]})
    (root / "JPEGImages" / "a.jpg").unlink()
    _error(lambda: load_voc(root, "train"), root / "JPEGImages" / "a.jpg")


def test_image_with_a_bad_header(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": [("dog", (1, 1, 10, 10), 0)]})
    (root / "JPEGImages" / "a.jpg").write_bytes(b"this is not a picture")
    assert "not an image" in _error(lambda: load_voc(root, "train"), root / "JPEGImages" / "a.jpg").message


def test_empty_image_file(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": [("dog", (1, 1, 10, 10), 0)]})
    (root / "JPEGImages" / "a.jpg").write_bytes(b"")
    _error(lambda: load_voc(root, "train"), root / "JPEGImages" / "a.jpg")


def test_image_that_does_not_decode_fails_at_load_time(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": [("dog", (1, 1, 10, 10), 0)]})
    path = root / "JPEGImages" / "a.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00garbage" * 50)
    dataset = DetectionDataset(load_voc(root, "train"), image_size=32, train=False)
    assert "decode" in _error(lambda: dataset[0], path).message


def test_image_size_differing_from_annotation_fails_at_load_time(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": [("dog", (1, 1, 10, 10), 0)]}, size=(80, 48))
    dataset = DetectionDataset(load_voc(root, "train"), image_size=32, train=False)
    assert "64x48" in _error(lambda: dataset[0], root / "JPEGImages" / "a.jpg").message


def test_malformed_xml(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": [("dog", (1, 1, 10, 10), 0)]})
    (root / "Annotations" / "a.xml").write_text("<annotation><object>")
    assert "malformed" in _error(lambda: load_voc(root, "train"), root / "Annotations" / "a.xml").message


def test_missing_annotation_file(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": [("dog", (1, 1, 10, 10), 0)]})
    (root / "Annotations" / "a.xml").unlink()
    _error(lambda: load_voc(root, "train"), root / "Annotations" / "a.xml")


def test_missing_split_file(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": [("dog", (1, 1, 10, 10), 0)]})
    _error(lambda: load_voc(root, "val"), root / "ImageSets" / "Main" / "val.txt")


def test_empty_split_file(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": [("dog", (1, 1, 10, 10), 0)]}, split_ids=[])
    _error(lambda: load_voc(root, "train"), root / "ImageSets" / "Main" / "train.txt")


def test_split_without_objects_cannot_derive_classes(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": []})
    _error(lambda: load_voc(root, "train"), root / "ImageSets" / "Main" / "train.txt")
    assert load_voc(root, "train", classes=["dog"]).records[0].num_objects == 0


def test_inverted_box(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": [("dog", (20, 1, 10, 10), 0)]})
    assert "xmax < xmin" in _error(lambda: load_voc(root, "train"), root / "Annotations" / "a.xml").message


def test_not_a_voc_folder(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": [("dog", (1, 1, 10, 10), 0)]})
    (root / "JPEGImages" / "a.jpg").unlink()
    (root / "JPEGImages").rmdir()
    _error(lambda: load_voc(root, "train"), root)
    _error(lambda: load_voc(tmp_path / "nowhere", "train"), tmp_path / "nowhere")


def test_open_index_detects_voc(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": [("dog", (1, 1, 10, 10), 0)]})
    assert open_index(root, "train").format == "voc"
    _error(lambda: open_index(tmp_path, "train"), tmp_path)
    with pytest.raises(UsageError):
        open_index(root, "train", format="darknet")
    _error(lambda: open_index(root, "train", format="yolo"), root)  # a VOC folder is no YOLO data set
