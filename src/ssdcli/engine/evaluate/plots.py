"""Evaluation pictures drawn with OpenCV: precision-recall curves per class and a confusion summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou

from ssdcli.data.records import DatasetIndex
from ssdcli.metrics.voc import VocResult

from ssdcli.engine.inference.draw import class_colour
from ssdcli.engine.inference.batched import ImageDetections

WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (200, 200, 200)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _save_png(image: np.ndarray, path: Path) -> Path:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")
    return path


def draw_pr_curve(name: str, label: int, recall: np.ndarray, precision: np.ndarray, ap: float, size: int = 480) -> np.ndarray:
    """One class's precision-recall curve [size, size, 3] BGR, with axes, grid and the AP in the title."""
    canvas = np.full((size, size, 3), WHITE, dtype=np.uint8)
    left, top, plot = 50, 40, size - 80
    for k in range(11):
        offset = int(round(k / 10 * plot))
        cv2.line(canvas, (left + offset, top), (left + offset, top + plot), GREY, 1)
        cv2.line(canvas, (left, top + offset), (left + plot, top + offset), GREY, 1)
        if k % 5 == 0:
            cv2.putText(canvas, f"{k / 10:.1f}", (left + offset - 10, top + plot + 18), FONT, 0.4, BLACK, 1, cv2.LINE_AA)
            cv2.putText(canvas, f"{1 - k / 10:.1f}", (left - 32, top + offset + 4), FONT, 0.4, BLACK, 1, cv2.LINE_AA)
    cv2.rectangle(canvas, (left, top), (left + plot, top + plot), BLACK, 1)
    if len(recall):
        points = np.stack([left + recall * plot, top + (1 - precision) * plot], axis=1).round().astype(np.int32)
        cv2.polylines(canvas, [points.reshape(-1, 1, 2)], False, class_colour(label), 2, cv2.LINE_AA)
    title = f"{name}: AP {ap:.3f}" if np.isfinite(ap) else f"{name}: no ground truth"
    cv2.putText(canvas, title, (left, 25), FONT, 0.6, BLACK, 1, cv2.LINE_AA)
    cv2.putText(canvas, "recall", (left + plot // 2 - 20, size - 8), FONT, 0.45, BLACK, 1, cv2.LINE_AA)
    cv2.putText(canvas, "precision", (4, top - 8), FONT, 0.45, BLACK, 1, cv2.LINE_AA)
    return canvas


@dataclass(frozen=True)
class Confusion:
    """counts [C, C+1]: row = GT class (1..C-1, then "background" for unmatched detections), column = predicted
    class (1..C-1, then "missed" for GTs no detection found). Index 0 of each axis is unused."""

    class_names: tuple[str, ...]
    counts: np.ndarray
    score_threshold: float
    iou_threshold: float


def confusion_summary(
    index: DatasetIndex, detections: list[ImageDetections], score_threshold: float = 0.3, iou_threshold: float = 0.5
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
    rows, cols = names + ["background"], names + ["missed"]
    cell, head = 90, 120
    height, width = head + cell * len(rows) + 30, head + cell * len(cols) + 10
    canvas = np.full((height, width, 3), WHITE, dtype=np.uint8)
    title = f"GT (rows) vs detections (columns), score >= {confusion.score_threshold:g}, IoU >= {confusion.iou_threshold:g}"
    cv2.putText(canvas, title, (8, 20), FONT, 0.45, BLACK, 1, cv2.LINE_AA)
    counts = np.concatenate([confusion.counts[1:-1], confusion.counts[-1:]], axis=0)[:, 1:]  # [rows, cols]
    for j, name in enumerate(cols):
        cv2.putText(canvas, name[:11], (head + j * cell + 4, head - 10), FONT, 0.45, BLACK, 1, cv2.LINE_AA)
    for i, name in enumerate(rows):
        y = head + i * cell
        cv2.putText(canvas, name[:13], (4, y + cell // 2), FONT, 0.45, BLACK, 1, cv2.LINE_AA)
        total = max(1, int(counts[i].sum()))
        for j in range(len(cols)):
            x = head + j * cell
            share = counts[i, j] / total
            shade = int(255 - 155 * share)
            cv2.rectangle(canvas, (x, y), (x + cell - 2, y + cell - 2), (255, shade, shade), -1)
            cv2.putText(canvas, str(int(counts[i, j])), (x + 8, y + cell // 2 + 5), FONT, 0.6, BLACK, 1, cv2.LINE_AA)
    return canvas


def _pr_curve_path(folder: Path, class_name: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in class_name)
    return folder / f"pr_{safe}.png"


def evaluation_plot_paths(folder: Path, class_names: Sequence[str]) -> list[Path]:
    """The files :func:`write_evaluation_plots` writes for these classes (background excluded)."""
    return [_pr_curve_path(folder, name) for name in class_names] + [folder / "confusion.png"]


def write_evaluation_plots(
    folder: Path, voc: VocResult, index: DatasetIndex, detections: list[ImageDetections]
) -> list[Path]:
    """``pr_<class>.png`` per class and ``confusion.png`` into ``folder`` (created); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for label, result in enumerate(voc.per_class, start=1):
        image = draw_pr_curve(result.name, label, result.curve_recall, result.curve_precision, result.ap)
        paths.append(_save_png(image, _pr_curve_path(folder, result.name)))
    paths.append(_save_png(draw_confusion(confusion_summary(index, detections)), folder / "confusion.png"))
    return paths
