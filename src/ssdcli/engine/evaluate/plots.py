"""Evaluation pictures: precision-recall curves per class and a confusion summary (counted here, drawn by
:mod:`ssdcli.viz`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from ssdcli.data.images import write_image
from ssdcli.data.records import DatasetIndex
from ssdcli.metrics.voc import VocResult
from ssdcli.viz.confusion import draw_confusion_table
from ssdcli.viz.curves import draw_pr_curve

from ssdcli.core.detections import Detections


@dataclass(frozen=True)
class Confusion:
    """counts [C, C+1]: row = GT class (1..C-1, then "background" for unmatched detections), column = predicted
    class (1..C-1, then "missed" for GTs no detection found). Index 0 of each axis is unused."""

    class_names: tuple[str, ...]
    counts: np.ndarray
    score_threshold: float
    iou_threshold: float


def confusion_summary(
    index: DatasetIndex, detections: list[Detections], score_threshold: float = 0.3, iou_threshold: float = 0.5
) -> Confusion:
    """Match detections above ``score_threshold`` to GTs of any class (greedy by score, IoU >= threshold)."""
    num_classes = len(index.class_names)
    counts = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)  # last row: background, last col: missed
    records = {r.image_id: r for r in index.records}
    for found in detections:
        record = records[found.image_id]
        keep = found.scores >= score_threshold
        order = np.argsort(-found.scores[keep], kind="stable")
        det_boxes, det_labels = found.boxes[keep][order], found.labels[keep][order]
        gt_valid = ~record.ignore
        gt_boxes, gt_labels = record.boxes[gt_valid], record.labels[gt_valid]
        taken = np.zeros(len(gt_boxes), dtype=bool)
        if len(gt_boxes) and len(det_boxes):
            iou = box_iou(torch.from_numpy(det_boxes).double(), torch.from_numpy(gt_boxes).double()).numpy()
        else:
            iou = np.zeros((len(det_boxes), len(gt_boxes)))
        for d in range(len(det_boxes)):
            candidates = np.where(~taken & (iou[d] >= iou_threshold), iou[d], -1.0)
            g = int(candidates.argmax()) if len(candidates) else -1
            if g >= 0 and candidates[g] >= 0:
                taken[g] = True
                counts[gt_labels[g], det_labels[d]] += 1
            else:
                counts[num_classes, det_labels[d]] += 1
        np.add.at(counts, (gt_labels[~taken], num_classes), 1)
    return Confusion(index.class_names, counts, score_threshold, iou_threshold)


def draw_confusion(confusion: Confusion) -> np.ndarray:
    """The confusion counts as a table image, cells shaded by their share of the row."""
    names = list(confusion.class_names[1:])
    counts = np.concatenate([confusion.counts[1:-1], confusion.counts[-1:]], axis=0)[:, 1:]  # [rows, cols]
    title = f"GT (rows) vs detections (columns), score >= {confusion.score_threshold:g}, IoU >= {confusion.iou_threshold:g}"
    return draw_confusion_table(names + ["background"], names + ["missed"], counts, title)


def _pr_curve_path(folder: Path, class_name: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in class_name)
    return folder / f"pr_{safe}.png"


def evaluation_plot_paths(folder: Path, class_names: Sequence[str]) -> list[Path]:
    """The files :func:`write_evaluation_plots` writes for these classes (background excluded)."""
    return [_pr_curve_path(folder, name) for name in class_names] + [folder / "confusion.png"]


def write_evaluation_plots(
    folder: Path, voc: VocResult, index: DatasetIndex, detections: list[Detections]
) -> list[Path]:
    """``pr_<class>.png`` per class and ``confusion.png`` into ``folder`` (created); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for result in voc.per_class:
        image = draw_pr_curve(result.name, result.curve_recall, result.curve_precision, result.ap)
        paths.append(write_image(_pr_curve_path(folder, result.name), image))
    paths.append(write_image(folder / "confusion.png", draw_confusion(confusion_summary(index, detections))))
    return paths
