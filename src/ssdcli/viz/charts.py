"""Vertical bar charts on the dark background of the ``ssd encode`` figures."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ssdcli.viz.colours import ALERT, BAR, PANEL_BACKGROUND, TEXT, Colour, bgr
from ssdcli.viz.text import fit_text, put_text

CHART_WIDTH = 560
CHART_HEIGHT = 330


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    notes: Sequence[str],
    vmax: float,
    colours: Sequence[Colour] | None = None,
    marker: float | None = None,
) -> np.ndarray:
    """A bar chart BGR [CHART_HEIGHT, CHART_WIDTH, 3] of ``values`` (N, on a 0..``vmax`` axis) named ``labels``
    below and ``notes`` above the bars, in ``colours`` (N RGB; default the scheme's bar colour); ``marker`` draws a
    dashed vertical line at that fraction of the x axis."""
    chart = np.full((CHART_HEIGHT, CHART_WIDTH, 3), bgr(PANEL_BACKGROUND), dtype=np.uint8)
    left, right, top, bottom = 44, CHART_WIDTH - 10, 24, CHART_HEIGHT - 30
    cv2.line(chart, (left, bottom), (right, bottom), bgr(TEXT), 1)
    cv2.line(chart, (left, top), (left, bottom), bgr(TEXT), 1)
    vmax = vmax if vmax > 0 else 1.0
    for tick in (0.0, 0.5, 1.0):
        y = int(bottom - tick * (bottom - top))
        cv2.line(chart, (left - 3, y), (left, y), bgr(TEXT), 1)
        value = tick * vmax
        put_text(chart, f"{value:.0%}" if vmax <= 1.0 else f"{value:.3g}", (2, y + 4), 0.33, TEXT)
    slot = (right - left) / max(len(values), 1)
    label_scale = 0.38 if slot > 40 else 0.3
    for n, (label, value, note) in enumerate(zip(labels, values, notes)):
        x1 = int(left + n * slot + slot * 0.15)
        x2 = int(left + (n + 1) * slot - slot * 0.15)
        y = int(bottom - min(value / vmax, 1.0) * (bottom - top))
        colour = colours[n] if colours is not None else BAR
        if y < bottom:
            cv2.rectangle(chart, (x1, y), (max(x2, x1 + 1), bottom), bgr(colour), -1)
        put_text(chart, fit_text(note, int(slot), 0.33), (x1, max(y - 4, top - 4)), 0.33, TEXT)
        put_text(chart, fit_text(label, int(slot), label_scale), (x1, bottom + 16), label_scale, TEXT)
    if marker is not None:
        x = int(left + marker * (right - left))
        for y in range(top, bottom, 8):
            cv2.line(chart, (x, y), (x, min(y + 4, bottom)), bgr(ALERT), 1)
    return chart
