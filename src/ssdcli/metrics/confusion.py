"""A confusion summary of detections against ground truth of any class: which class each detection took, which
objects were missed and which detections matched nothing. For pictures and reports; the AP metrics are in
:mod:`ssdcli.metrics.voc` and :mod:`ssdcli.metrics.coco`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

from ssdcli.core.detections import Detections


@dataclass(frozen=True)
class Confusion:
    """counts [C + 1, C + 1] for the C class names (index 0 the background): row = GT class (1..C-1, then row C,
    "background", for detections that matched no object), column = detected class (1..C-1, then column C,
    "missed", for objects no detection matched). Index 0 of each axis is unused."""

    class_names: tuple[str, ...]
    counts: np.ndarray
    score_threshold: float
    iou_threshold: float


def _greedy_match(
    det_boxes: np.ndarray, gt_boxes: np.ndarray, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Detections [D, 4] in score order against objects [G, 4] (xyxy pixels): each detection takes the free
    object of highest IoU >= ``iou_threshold``. Returns (object index per detection [D], -1 for none; taken [G])."""
    taken = np.zeros(len(gt_boxes), dtype=bool)
    match = np.full(len(det_boxes), -1, dtype=np.int64)
    if not len(gt_boxes) or not len(det_boxes):
        return match, taken
    iou = box_iou(torch.from_numpy(det_boxes).double(), torch.from_numpy(gt_boxes).double()).numpy()  # [D, G]
    for d in range(len(det_boxes)):
        candidates = np.where(~taken & (iou[d] >= iou_threshold), iou[d], -1.0)
        g = int(candidates.argmax())
        if candidates[g] >= 0:
            taken[g] = True
            match[d] = g
    return match, taken


def confusion_counts(
    ground_truth: Sequence[tuple[np.ndarray, np.ndarray]],
    detections: Sequence[Detections],
    class_names: Sequence[str],
    score_threshold: float = 0.3,
    iou_threshold: float = 0.5,
) -> Confusion:
    """Count, image by image, detections scoring at least ``score_threshold`` matched greedily by score to the
    objects of any class (IoU >= ``iou_threshold``).

    Args:
        ground_truth: per image, (boxes [G, 4] xyxy pixels, labels [G] 1..C-1) of the objects to count (ignored
            ones left out), aligned with ``detections``.
        detections: per image, its detections (labels 1..C-1).
        class_names: the C names, index 0 the background.
    """
    num_classes = len(class_names)
    counts = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)  # last row: background, last col: missed
    for (gt_boxes, gt_labels), found in zip(ground_truth, detections, strict=True):
        keep = found.scores >= score_threshold
        order = np.argsort(-found.scores[keep], kind="stable")
        det_boxes, det_labels = found.boxes[keep][order], found.labels[keep][order]
        gt_labels = np.asarray(gt_labels)
        match, taken = _greedy_match(np.asarray(det_boxes), np.asarray(gt_boxes), iou_threshold)
        rows = np.full(len(match), num_classes, dtype=np.int64)  # [D] the GT class taken, else "background"
        rows[match >= 0] = gt_labels[match[match >= 0]]
        np.add.at(counts, (rows, det_labels), 1)
        np.add.at(counts, (gt_labels[~taken], num_classes), 1)
    return Confusion(tuple(class_names), counts, score_threshold, iou_threshold)
