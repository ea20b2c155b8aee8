"""Transforms (boxes follow the pixels through augmentation; evaluation maps boxes exactly) and batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from ssdcli.config import IMAGENET_MEAN, IMAGENET_STD
from ssdcli.data.collate import LoadFailure, collate_detections
from ssdcli.data.transforms import SSDRandomIoUCrop, build_transforms, make_sample

IDENTITY = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


@pytest.fixture(autouse=True)
def one_thread():
    """Small-image transforms run fastest on one thread (as in DataLoader workers); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_eval_transform_maps_boxes_and_pixels_exactly() -> None:
    image = np.full((60, 100, 3), (10, 128, 250), dtype=np.uint8)
    boxes = np.array([[0, 0, 100, 60], [12.5, 7, 40, 33]], dtype=np.float32)
    out, target = build_transforms(80, train=False)(*make_sample(image, boxes, [1, 2], [False, True]))
    assert out.shape == (3, 80, 80) and out.dtype == torch.float32
    expected = boxes * np.array([80 / 100, 80 / 60, 80 / 100, 80 / 60], dtype=np.float32)
    np.testing.assert_allclose(target["boxes"].numpy(), expected, rtol=0, atol=1e-5)
    assert target["labels"].tolist() == [1, 2] and target["ignore"].tolist() == [False, True]
    for c, value in enumerate((10, 128, 250)):
        expected_value = (value / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(out[c], torch.full((80, 80), expected_value), atol=1e-5)
    assert type(target["boxes"]) is torch.Tensor  # plain tensors out


@pytest.mark.parametrize("seed", range(60))
def test_train_boxes_still_cover_the_drawn_rectangle(seed: int) -> None:
    """A white rectangle on black: photometric steps keep grey levels in order, so after augmentation the
    rectangle's pixels are those above the midpoint between the darkest and the brightest value."""
    torch.manual_seed(seed)
    size = 64
    image = np.zeros((80, 100, 3), dtype=np.uint8)
    x1, y1, x2, y2 = 31, 22, 56, 42  # 25 x 20 px: no crop (at least 30 x 24 px) fits inside it
    image[y1:y2, x1:x2] = 255
    transform = build_transforms(size, train=True, **IDENTITY)
    out, target = transform(*make_sample(image, np.array([[x1, y1, x2, y2]], np.float32), [1], [False]))
    assert out.shape == (3, size, size)
    if len(target["boxes"]) == 0:
        return  # the crop left the rectangle's centre out: its box is dropped
    grey = out[0]
    bright = grey > (grey.min() + grey.max()) / 2
    assert bright.any()
    ys, xs = torch.nonzero(bright, as_tuple=True)
    bx1, by1, bx2, by2 = target["boxes"][0].tolist()
    tolerance = 1.0  # the resize blends edge pixels
    assert xs.min() >= bx1 - tolerance and xs.max() + 1 <= bx2 + tolerance
    assert ys.min() >= by1 - tolerance and ys.max() + 1 <= by2 + tolerance
    assert xs.min() <= bx1 + tolerance and xs.max() + 1 >= bx2 - tolerance
    assert ys.min() <= by1 + tolerance and ys.max() + 1 >= by2 - tolerance


def test_labels_and_ignore_follow_their_boxes() -> None:
    """Four rectangles with grey levels rising with their label; ignore marks odd labels. Whatever the
    augmentation keeps, each kept box still sits on its own rectangle and keeps its own flag."""
    levels = {1: 60, 2: 120, 3: 180, 4: 240}
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 50, 50], [100, 10, 150, 40], [20, 70, 60, 110], [90, 60, 150, 115]], np.float32)
    for (x1, y1, x2, y2), level in zip(boxes.astype(int), levels.values()):
        image[y1:y2, x1:x2] = level
    transform = build_transforms(96, train=True, **IDENTITY)
    kept_counts = set()
    for seed in range(80):
        torch.manual_seed(seed)
        out, target = transform(*make_sample(image, boxes, [1, 2, 3, 4], [True, False, True, False]))
        labels = target["labels"].tolist()
        kept_counts.add(len(labels))
        assert target["ignore"].tolist() == [label % 2 == 1 for label in labels]
        centres = [out[0, int((b[1] + b[3]) / 2), int((b[0] + b[2]) / 2)].item() for b in target["boxes"].tolist()]
        order = np.argsort(labels)
        assert all(np.diff(np.array(centres)[order]) > 0), (seed, labels, centres)
    assert len(kept_counts) > 1  # some augmentations dropped boxes


def test_transforms_leave_the_record_arrays_alone() -> None:
    boxes = np.array([[5, 5, 30, 30], [20, 10, 45, 35]], np.float32)
    labels, ignore = np.array([1, 2]), np.array([False, True])
    kept = boxes.copy(), labels.copy(), ignore.copy()
    torch.manual_seed(0)
    for train in (True, False):
        transform = build_transforms(32, train=train)
        for _ in range(30):
            transform(*make_sample(np.zeros((40, 50, 3), np.uint8), boxes, labels, ignore))
    for before, after in zip(kept, (boxes, labels, ignore)):
        np.testing.assert_array_equal(before, after)


def test_image_without_boxes() -> None:
    torch.manual_seed(0)
    transform = build_transforms(32, train=True)
    for _ in range(20):
        out, target = transform(*make_sample(np.zeros((40, 50, 3), np.uint8), np.zeros((0, 4)), [], []))
        assert out.shape == (3, 32, 32) and target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)


def _crop_stats(crop: v2.RandomIoUCrop, boxes: tv_tensors.BoundingBoxes, samples: int) -> np.ndarray:
    """[samples, 3]: kept whole (0/1), crop width and height as fractions of the image."""
    image = tv_tensors.Image(torch.zeros(3, 100, 100, dtype=torch.uint8))
    rows = []
    for _ in range(samples):
        params = crop.make_params([image, boxes])
        if not params:
            rows.append((1.0, 1.0, 1.0))
            continue
        left, top, width, height = params["left"], params["top"], params["width"], params["height"]
        assert 0 <= left and left + width <= 100 and 0 <= top and top + height <= 100
        assert 0.5 <= width / height <= 2.0 and width >= 30 and height >= 30
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        cy = (boxes[:, 1] + boxes[:, 3]) / 2
        within = (left < cx) & (cx < left + width) & (top < cy) & (cy < top + height)
        assert torch.equal(params["is_within_crop_area"], within) and within.any()
        rows.append((0.0, width / 100, height / 100))
    return np.array(rows)


def test_ssd_iou_crop_samples_like_torchvision() -> None:
    boxes = tv_tensors.BoundingBoxes(
        torch.tensor([[10.0, 10.0, 40.0, 50.0], [60.0, 55.0, 95.0, 90.0]]), format="XYXY", canvas_size=(100, 100)
    )
    torch.manual_seed(0)
    ours = _crop_stats(SSDRandomIoUCrop(), boxes, 1500)
    torch.manual_seed(1)
    reference = _crop_stats(v2.RandomIoUCrop(), boxes, 200)
    for column in range(3):
        a, b = ours[:, column], reference[:, column]
        standard_error = np.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(a.mean() - b.mean()) < 4 * standard_error + 1e-9, (column, a.mean(), b.mean())


def test_collate_pads_and_marks_ignored_objects() -> None:
    def sample(image_id: int, labels: list[int], ignore: list[bool]) -> tuple[torch.Tensor, dict]:
        count = len(labels)
        boxes = torch.tensor([[0.1 * k, 0.1, 0.1 * k + 0.2, 0.5] for k in range(count)]).reshape(-1, 4)
        return torch.full((3, 8, 8), float(image_id)), {
            "boxes": boxes,
            "labels": torch.tensor(labels, dtype=torch.int64),
            "ignore": torch.tensor(ignore, dtype=torch.bool),
            "image_id": image_id,
            "orig_size": (30 + image_id, 40),
        }

    batch = collate_detections([sample(4, [2, 1, 3], [False, True, False]), sample(5, [], []), sample(6, [1], [True])])
    assert batch.images.shape == (3, 3, 8, 8) and batch.images[1].eq(5).all()
    assert batch.boxes.shape == (3, 3, 4) and batch.boxes[1].eq(0).all()
    assert batch.classes.tolist() == [[2, -1, 3], [-1, -1, -1], [-1, -1, -1]]
    assert batch.labels.tolist() == [[2, 1, 3], [-1, -1, -1], [1, -1, -1]]
    assert batch.ignore.tolist() == [[False, True, False], [False] * 3, [True, False, False]]
    assert batch.valid.tolist() == [[True] * 3, [False] * 3, [True, False, False]]
    assert batch.image_ids.tolist() == [4, 5, 6] and batch.orig_sizes.tolist() == [[34, 40], [35, 40], [36, 40]]
    assert batch.classes.dtype == torch.int64 and batch.boxes.dtype == torch.float32
    assert len(batch) == 3 and batch.to("cpu").classes.tolist() == batch.classes.tolist()
    empty = collate_detections([sample(1, [], [])])
    assert empty.boxes.shape == (1, 1, 4) and empty.classes.tolist() == [[-1]]


def test_collated_batch_feeds_the_matcher() -> None:
    from ssdcli.core.anchors import default_boxes
    from ssdcli.core.layouts import get_layout
    from ssdcli.core.matching import encode

    torch.manual_seed(0)
    transform = build_transforms(300, train=True)
    samples = []
    for k in range(2):
        image = np.zeros((200, 240, 3), np.uint8)
        boxes = np.array([[20, 30, 120, 150], [130, 20, 230, 90]])
        pixels, target = transform(*make_sample(image, boxes, [1, 2], [False, k == 1]))
        target["boxes"] = target["boxes"] / 300
        samples.append((pixels, dict(target, image_id=k, orig_size=(200, 240))))
    batch = collate_detections(samples)
    targets = encode(batch.boxes, batch.classes, default_boxes(get_layout("ssd300")))
    assert targets.labels.shape == (2, 8732)
    assert set(targets.labels.unique().tolist()) <= {0, 1, 2}


@pytest.mark.parametrize(
    ("box", "label", "problem"),
    [
        ([0.1, 0.1, float("nan"), 0.5], 1, "non-finite"),
        ([0.1, 0.1, 1.2, 0.5], 1, "outside the image"),
        ([0.5, 0.1, 0.2, 0.5], 1, "x2 < x1"),
        ([0.1, 0.1, 0.2, 0.5], 0, "label 0"),
    ],
)
def test_collate_is_where_targets_are_checked(box: list[float], label: int, problem: str) -> None:
    target = {"boxes": torch.tensor([box]), "labels": torch.tensor([label]), "ignore": torch.tensor([False]),
              "image_id": 17, "orig_size": (8, 8)}  # fmt: skip
    good = {**target, "boxes": torch.tensor([[0.1, 0.1, 0.2, 0.5]]), "labels": torch.tensor([1]), "image_id": 3}
    failure = collate_detections([(torch.zeros(3, 8, 8), good), (torch.zeros(3, 8, 8), target)])
    assert isinstance(failure, LoadFailure) and failure.message.startswith("image 17: ") and problem in failure.message
