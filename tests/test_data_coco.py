"""COCO adapter: hand-written instances files checked against pycocotools, the layout helper, and bad inputs."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from ssdcli.data.dataset import DetectionDataset, open_index
from ssdcli.data.formats import detect_format
from ssdcli.data.formats.coco import find_coco, load_coco
from ssdcli.errors import DataError

# Non-contiguous category ids on purpose, listed out of order.
CATEGORIES = [{"id": 12, "name": "zebra"}, {"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
IMAGES = [
    {"id": 42, "file_name": "a.png", "width": 80, "height": 60},
    {"id": 7, "file_name": "b.png", "width": 50, "height": 40},
    {"id": 9, "file_name": "c.png", "width": 30, "height": 30},  # no objects
]
ANNOTATIONS = [
    {"id": 1, "image_id": 42, "category_id": 7, "bbox": [10.5, 5, 20, 30], "iscrowd": 0},
    {"id": 2, "image_id": 42, "category_id": 12, "bbox": [60, 40, 30, 30], "iscrowd": 1},  # reaches outside
    {"id": 3, "image_id": 7, "category_id": 3, "bbox": [0, 0, 50, 40]},
    {"id": 4, "image_id": 7, "category_id": 3, "bbox": [5, 5, 0, 10]},  # zero width
    {"id": 5, "image_id": 7, "category_id": 12, "bbox": [55, 1, 4, 4]},  # wholly right of the image
]


def _coco(
    tmp_path: Path, split: str = "train", **changes: Any
) -> tuple[Path, Path]:
    """ROOT/annotations/instances_<split>.json and ROOT/<split>/ with the images above (or ``changes``)."""
    data: dict[str, Any] = {"images": IMAGES, "annotations": ANNOTATIONS, "categories": CATEGORIES}
    data.update(changes)
    root = tmp_path / "coco"
    images_dir = root / split
    images_dir.mkdir(parents=True)
    for image in IMAGES:
        cv2.imwrite(str(images_dir / image["file_name"]), np.zeros((image["height"], image["width"], 3), np.uint8))
    (root / "annotations").mkdir()
    path = root / "annotations" / f"instances_{split}.json"
    path.write_text(json.dumps(data))
    return path, images_dir


def test_matches_pycocotools_and_maps_categories_back(tmp_path: Path) -> None:
    path, images_dir = _coco(tmp_path)
    index = load_coco(path, images_dir)
    assert index.format == "coco" and index.split == "train" and index.root == tmp_path / "coco"
    assert index.class_names == ("background", "cat", "dog", "zebra")  # by increasing category id
    assert index.category_ids == (0, 3, 7, 12)
    reference = COCO(str(path))
    assert [r.source_id for r in index.records] == [42, 7, 9]
    assert [r.image_id for r in index.records] == [0, 1, 2]
    for record in index.records:
        info = reference.loadImgs(record.source_id)[0]
        assert (record.width, record.height) == (info["width"], info["height"])
        assert record.path == images_dir / info["file_name"]
        expected_boxes, expected_ids, expected_crowd = [], [], []
        for ann in reference.loadAnns(reference.getAnnIds(imgIds=record.source_id)):
            x, y, w, h = ann["bbox"]
            x1, y1 = min(max(x, 0), info["width"]), min(max(y, 0), info["height"])
            x2, y2 = min(max(x + w, 0), info["width"]), min(max(y + h, 0), info["height"])
            if x2 > x1 and y2 > y1:
                expected_boxes.append([x1, y1, x2, y2])
                expected_ids.append(ann["category_id"])
                expected_crowd.append(bool(ann.get("iscrowd", 0)))
        np.testing.assert_allclose(record.boxes, np.array(expected_boxes, np.float32).reshape(-1, 4))
        assert [index.category_ids[label] for label in record.labels] == expected_ids
        assert [reference.loadCats(i)[0]["name"] for i in expected_ids] == [index.class_names[k] for k in record.labels]
        assert record.ignore.tolist() == expected_crowd
    w = index.warnings
    assert (w.clipped_boxes, w.zero_area_boxes, w.duplicate_ids) == (1, 2, 0)
    assert w.clipped_files == ("a.png",) and w.zero_area_files == ("b.png",)


def test_given_classes_choose_the_labels(tmp_path: Path) -> None:
    path, images_dir = _coco(tmp_path)
    index = load_coco(path, images_dir, classes=["background", "zebra", "dog", "cat"])
    assert index.category_ids == (0, 12, 7, 3)
    assert index.records[0].labels.tolist() == [2, 1]


def test_category_outside_given_classes_is_an_error(tmp_path: Path) -> None:
    path, images_dir = _coco(tmp_path)
    with pytest.raises(DataError) as caught:
        load_coco(path, images_dir, classes=["dog", "cat"])
    assert caught.value.path == str(path) and "'zebra'" in caught.value.message


def test_class_not_among_categories_is_an_error(tmp_path: Path) -> None:
    path, images_dir = _coco(tmp_path)
    with pytest.raises(DataError) as caught:
        load_coco(path, images_dir, classes=["dog", "cat", "zebra", "horse"])
    assert caught.value.path == str(path) and "'horse'" in caught.value.message


def test_find_coco_and_open_index(tmp_path: Path) -> None:
    path, images_dir = _coco(tmp_path, split="val2017")
    root = tmp_path / "coco"
    assert find_coco(root, "val2017") == (path, images_dir)
    assert detect_format(root).name == "coco" and detect_format(path).name == "coco"
    from_root = open_index(root, "val2017")
    from_file = open_index(path, None)  # the file's own split
    assert from_root.split == from_file.split == open_index(path, "val2017").split == "val2017"
    assert [r.path for r in from_root.records] == [r.path for r in from_file.records]
    with pytest.raises(DataError) as caught:
        open_index(root, "train2017")
    assert caught.value.path == str(root / "annotations" / "instances_train2017.json")
    assert "val2017" in caught.value.message


def test_a_json_file_refuses_a_split_it_does_not_hold(tmp_path: Path) -> None:
    """`--data instances_train.json` once gave its training images for any split, so training validated on its
    own training set."""
    path, _ = _coco(tmp_path, split="train")
    for split in ("val", "test", "ignored"):
        error = _error(functools.partial(open_index, path, split), path)
        assert f"holds one split ('train'), not {split!r}" in error.message
    assert open_index(path, "train", "coco").split == "train"
    assert open_index(tmp_path / "coco", None).split == "train"  # a root: the default split
    assert open_index(tmp_path / "coco", None, default_split="train").split == "train"


def test_images_under_images_folder(tmp_path: Path) -> None:
    path, images_dir = _coco(tmp_path)
    moved = tmp_path / "coco" / "images" / "train"
    moved.parent.mkdir()
    images_dir.rename(moved)
    assert open_index(tmp_path / "coco", "train").records[0].path == moved / "a.png"


def test_sizes_from_header_when_missing(tmp_path: Path) -> None:
    images = [{"id": 1, "file_name": "a.png"}]
    path, images_dir = _coco(tmp_path, images=images, annotations=[])
    record = load_coco(path, images_dir).records[0]
    assert (record.width, record.height) == (80, 60)


def test_duplicate_image_ids_counted(tmp_path: Path) -> None:
    path, images_dir = _coco(tmp_path, images=IMAGES + [IMAGES[0]])
    index = load_coco(path, images_dir)
    assert len(index) == 3 and index.warnings.duplicate_ids == 1


def test_dataset_item_from_coco(tmp_path: Path) -> None:
    path, images_dir = _coco(tmp_path)
    image, target = DetectionDataset(load_coco(path, images_dir), image_size=40, train=False)[0]
    assert image.shape == (3, 40, 40)
    np.testing.assert_allclose(target["boxes"][0].numpy(), [10.5 / 80, 5 / 60, 30.5 / 80, 35 / 60], atol=1e-6)
    assert target["ignore"].tolist() == [False, True]


def _error(call, path: Path) -> DataError:
    with pytest.raises(DataError) as caught:
        call()
    assert caught.value.path == str(path), caught.value
    assert str(path) in str(caught.value)
    return caught.value


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"images": "nope"}, "'images'"),
        ({"categories": [{"id": 1}]}, "'name'"),
        ({"categories": CATEGORIES + [{"id": 3, "name": "again"}]}, "listed twice"),
        ({"annotations": [{"image_id": 42, "category_id": 7, "bbox": [1, 2, 3]}]}, "bbox"),
        ({"annotations": [{"image_id": 42, "category_id": 7, "bbox": [1, 2, "x", 4]}]}, "bbox"),
        ({"annotations": [{"image_id": 42, "category_id": 8, "bbox": [1, 2, 3, 4]}]}, "unknown category id 8"),
        ({"annotations": [{"image_id": 5, "category_id": 7, "bbox": [1, 2, 3, 4]}]}, "image id 5"),
        ({"annotations": [{"image_id": 42, "category_id": 7, "bbox": [1, 2, -3, 4]}]}, "negative"),
        ({"annotations": [{"category_id": 7, "bbox": [1, 2, 3, 4]}]}, "'image_id'"),
        ({"images": []}, "empty"),
    ],
)
def test_malformed_json_names_the_file(tmp_path: Path, changes: dict[str, Any], words: str) -> None:
    path, images_dir = _coco(tmp_path, **changes)
    assert words in _error(lambda: load_coco(path, images_dir), path).message


def test_json_syntax_error(tmp_path: Path) -> None:
    path, images_dir = _coco(tmp_path)
    path.write_text('{"images": [')
    assert "malformed" in _error(lambda: load_coco(path, images_dir), path).message


def test_missing_json(tmp_path: Path) -> None:
    _error(lambda: load_coco(tmp_path / "none.json", tmp_path), tmp_path / "none.json")


def test_missing_and_corrupt_images(tmp_path: Path) -> None:
    path, images_dir = _coco(tmp_path)
    (images_dir / "b.png").unlink()
    _error(lambda: load_coco(path, images_dir), images_dir / "b.png")
    (images_dir / "b.png").write_bytes(b"GIF? no")
    _error(lambda: load_coco(path, images_dir), images_dir / "b.png")
    (images_dir / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    dataset = DetectionDataset(load_coco(path, images_dir), image_size=32, train=False)
    _error(lambda: dataset[1], images_dir / "b.png")
