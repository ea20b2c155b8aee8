"""A confusion table: counts of ground-truth classes (rows) against detected classes (columns)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ssdcli.viz.colours import WHITE
from ssdcli.viz.text import put_text

CELL = 90
HEAD = 120


def draw_confusion_table(rows: Sequence[str], columns: Sequence[str], counts: np.ndarray, title: str) -> np.ndarray:
    """``counts`` [R, C] as a BGR table image with ``rows`` (R names) down the side and ``columns`` (C names) on
    top, each cell shaded by its share of the row and ``title`` above."""
    height, width = HEAD + CELL * len(rows) + 30, HEAD + CELL * len(columns) + 10
    canvas = np.full((height, width, 3), WHITE, dtype=np.uint8)
    put_text(canvas, title, (8, 20), 0.45)
    for j, name in enumerate(columns):
        put_text(canvas, name[:11], (HEAD + j * CELL + 4, HEAD - 10), 0.45)
    for i, name in enumerate(rows):
        y = HEAD + i * CELL
        put_text(canvas, name[:13], (4, y + CELL // 2), 0.45)
        total = max(1, int(counts[i].sum()))
        for j in range(len(columns)):
            x = HEAD + j * CELL
            shade = int(255 - 155 * counts[i, j] / total)
            cv2.rectangle(canvas, (x, y), (x + CELL - 2, y + CELL - 2), (255, shade, shade), -1)
            put_text(canvas, str(int(counts[i, j])), (x + 8, y + CELL // 2 + 5), 0.6)
    return canvas
