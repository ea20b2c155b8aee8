"""Evaluation pictures: the confusion summary on a case whose answer is known, and the PR curve files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from ssdcli.core.detections import Detections
from ssdcli.data.records import DatasetIndex, DataWarnings, ImageRecord
from ssdcli.engine.evaluate.plots import confusion_summary, write_evaluation_plots
from ssdcli.metrics.voc import VocImageGT, voc_evaluate

NAMES = ("background", "cat", "dog")


def _index() -> DatasetIndex:
    boxes = np.array([[10, 10, 50, 50], [60, 60, 90, 90], [5, 60, 40, 95]], dtype=np.float32)
    record = ImageRecord(0, "a", Path("a.jpg"), 100, 100, boxes, np.array([1, 2, 2]), np.zeros(3, dtype=bool))
    return DatasetIndex(Path("."), "voc", "test", NAMES, (0, 1, 2), (record,), DataWarnings())


def _detections() -> list[Detections]:
    boxes = np.array(
        [[10, 10, 50, 50], [60, 60, 90, 90], [0, 0, 8, 8], [61, 61, 90, 90], [10, 10, 50, 50]], dtype=np.float32
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.1], dtype=np.float32)
    labels = np.array([1, 1, 2, 2, 2])  # cat right, dog called cat, a false dog, a duplicate dog, one below 0.3
    return [Detections(boxes, scores, labels, image_id=0)]


def test_confusion_counts_known_by_construction() -> None:
    confusion = confusion_summary(_index(), _detections(), score_threshold=0.3, iou_threshold=0.5)
    counts = confusion.counts  # rows: GT 1..2 then background (3); columns: predicted 1..2 then missed (3)
    assert counts[1, 1] == 1  # the cat found as a cat
    assert counts[2, 1] == 1  # the dog at (60, 60) found as a cat first (higher score)
    assert counts[3, 2] == 2  # the false dog and the duplicate dog on an already taken GT
    assert counts[2, 3] == 1  # the dog at (5, 60) missed
    assert counts.sum() == 5


def test_plots_are_png_files_with_the_curve(tmp_path: Path) -> None:
    index = _index()
    gt = {"a": VocImageGT(index.records[0].boxes, ("cat", "dog", "dog"), np.zeros(3, dtype=bool))}
    dets = [dataclasses.replace(found, image_id="a") for found in _detections()]
    voc = voc_evaluate(gt, dets, NAMES[1:])
    cat = voc.per_class[0]
    assert cat.curve_recall.tolist() == [1.0, 1.0] and cat.curve_precision.tolist() == [1.0, 0.5]
    paths = write_evaluation_plots(tmp_path, voc, index, _detections())
    assert sorted(p.name for p in paths) == ["confusion.png", "pr_cat.png", "pr_dog.png"]
    for path in paths:
        image = cv2.imread(str(path))
        assert image is not None and image.shape[2] == 3
