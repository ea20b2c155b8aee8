"""Curves: a precision-recall curve drawn with OpenCV, and the training curves of a run with matplotlib (an
optional extra, imported only when those are drawn)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ssdcli.viz.colours import BLACK, GRID_LINE, WHITE, bgr, class_colour
from ssdcli.viz.text import put_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def draw_pr_curve(name: str, recall: np.ndarray, precision: np.ndarray, ap: float, size: int = 480) -> np.ndarray:
    """Class ``name``'s precision-recall curve (``recall``, ``precision`` [P]) as BGR [size, size, 3], in the
    class colour, with axes, grid and the AP in the title."""
    canvas = np.full((size, size, 3), WHITE, dtype=np.uint8)
    left, top, plot = 50, 40, size - 80
    for k in range(11):
        offset = int(round(k / 10 * plot))
        cv2.line(canvas, (left + offset, top), (left + offset, top + plot), bgr(GRID_LINE), 1)
        cv2.line(canvas, (left, top + offset), (left + plot, top + offset), bgr(GRID_LINE), 1)
        if k % 5 == 0:
            put_text(canvas, f"{k / 10:.1f}", (left + offset - 10, top + plot + 18), 0.4)
            put_text(canvas, f"{1 - k / 10:.1f}", (left - 32, top + offset + 4), 0.4)
    cv2.rectangle(canvas, (left, top), (left + plot, top + plot), bgr(BLACK), 1)
    if len(recall):
        points = np.stack([left + recall * plot, top + (1 - precision) * plot], axis=1).round().astype(np.int32)
        cv2.polylines(canvas, [points.reshape(-1, 1, 2)], False, bgr(class_colour(name)), 2, cv2.LINE_AA)
    title = f"{name}: AP {ap:.3f}" if np.isfinite(ap) else f"{name}: no ground truth"
    put_text(canvas, title, (left, 25), 0.6)
    put_text(canvas, "recall", (left + plot // 2 - 20, size - 8), 0.45)
    put_text(canvas, "precision", (4, top - 8), 0.45)
    return canvas


def training_curves(rows: Sequence[dict[str, float]]) -> Figure:
    """A 1200 x 360 px figure of a run's metrics.csv rows (epoch, loss, loss_conf, loss_loc, lr, map50, coco_ap):
    training losses, learning rate and validation mAP per epoch, on its own Agg canvas (matplotlib's backend, a
    notebook's for instance, is left as it is). Needs matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in rows]
    figure = Figure(figsize=(12, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    losses, rate, quality = figure.subplots(1, 3)
    for key, label in (("loss", "total"), ("loss_conf", "classification"), ("loss_loc", "localisation")):
        losses.plot(epochs, [row[key] for row in rows], marker=".", label=label)
    losses.set(title="training loss", xlabel="epoch")
    losses.legend()
    rate.plot(epochs, [row["lr"] for row in rows], marker=".")
    rate.set(title="learning rate (end of epoch)", xlabel="epoch")
    rate.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    validated = [row for row in rows if isinstance(row.get("map50"), float) and not math.isnan(row["map50"])]
    for key, label in (("map50", "VOC07 mAP@0.5"), ("coco_ap", "COCO AP@[.5:.95]")):
        quality.plot([r["epoch"] for r in validated], [r[key] for r in validated], marker="o", label=label)
    quality.set(title="validation", xlabel="epoch", ylim=(0, 1))
    if validated:
        quality.legend()
    else:
        quality.text(0.5, 0.5, "no validation", ha="center", va="center", transform=quality.transAxes)
    return figure
