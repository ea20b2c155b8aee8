"""Evaluation pictures: precision-recall curves per class and a confusion summary (counted by
:mod:`ssdcli.metrics.confusion`, drawn by :mod:`ssdcli.viz`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ssdcli.core.detections import Detections
from ssdcli.data.images import write_image
from ssdcli.data.records import DatasetIndex
from ssdcli.engine.evaluate.validation import record_id
from ssdcli.metrics.confusion import Confusion, confusion_counts
from ssdcli.metrics.voc import VocResult
from ssdcli.viz.confusion import draw_confusion_table
from ssdcli.viz.curves import draw_pr_curve


def confusion_summary(
    index: DatasetIndex, detections: list[Detections], score_threshold: float = 0.3, iou_threshold: float = 0.5
) -> Confusion:
    """The confusion counts (:func:`ssdcli.metrics.confusion.confusion_counts`) of ``detections`` against the
    objects of ``index`` that are not ignored."""
    records = {r.image_id: r for r in index.records}
    counted = [~records[record_id(found)].ignore for found in detections]  # [G] per image
    ground_truth = [
        (records[record_id(found)].boxes[keep], records[record_id(found)].labels[keep])
        for found, keep in zip(detections, counted)
    ]
    return confusion_counts(ground_truth, detections, index.class_names, score_threshold, iou_threshold)


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
