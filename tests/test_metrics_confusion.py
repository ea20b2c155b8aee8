"""The confusion counts over several images, on cases whose answer is known by construction."""

from __future__ import annotations

import numpy as np

from ssdcli.core.detections import Detections
from ssdcli.metrics.confusion import confusion_counts

NAMES = ("background", "cat", "dog")
NONE = (np.zeros((0, 4), dtype=np.float32), np.zeros(0, dtype=np.int64))


def _found(boxes: list[list[float]], scores: list[float], labels: list[int]) -> Detections:
    return Detections(
        np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(scores, dtype=np.float32), np.array(labels, dtype=np.int64)
    )


def test_images_without_objects_or_detections_count_as_background_and_missed() -> None:
    cat = (np.array([[0, 0, 10, 10]], dtype=np.float32), np.array([1]))
    detections = [
        _found([[0, 0, 10, 10]], [0.9], [2]),  # image 1: the cat called a dog
        _found([[5, 5, 9, 9]], [0.8], [1]),  # image 2 (no objects): a cat on the background
        _found([], [], []),  # image 3: the cat missed
    ]
    confusion = confusion_counts([cat, NONE, cat], detections, NAMES)
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[1, 2] = 1  # cat detected as dog
    expected[3, 1] = 1  # background detected as cat
    expected[1, 3] = 1  # cat missed
    np.testing.assert_array_equal(confusion.counts, expected)


def test_thresholds_decide_what_counts() -> None:
    dog = (np.array([[0, 0, 10, 10]], dtype=np.float32), np.array([2]))
    found = _found([[0, 0, 10, 5], [0, 0, 10, 10]], [0.9, 0.2], [2, 2])  # IoU 0.5 at 0.9; exact box at 0.2
    strict = confusion_counts([dog], [found], NAMES, score_threshold=0.3, iou_threshold=0.6)
    assert strict.counts[3, 2] == 1 and strict.counts[2, 3] == 1 and strict.counts.sum() == 2
    loose = confusion_counts([dog], [found], NAMES, score_threshold=0.1, iou_threshold=0.5)
    assert loose.counts[2, 2] == 1 and loose.counts[3, 2] == 1 and loose.counts.sum() == 2  # first by score wins
