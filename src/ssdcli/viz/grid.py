"""Images side by side: each scaled into a square tile, the tiles in a square grid."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from ssdcli.viz.colours import WHITE


def tile(image_bgr: np.ndarray, side: int) -> np.ndarray:
    """``image_bgr`` [H, W, 3] scaled so that its longer side is ``side``, top-left in a white [side, side, 3]."""
    height, width = image_bgr.shape[:2]
    scale = side / max(height, width)
    resized = cv2.resize(image_bgr, (max(1, round(width * scale)), max(1, round(height * scale))))
    square = np.full((side, side, 3), WHITE, dtype=np.uint8)
    square[: resized.shape[0], : resized.shape[1]] = resized
    return square


def image_grid(tiles: Sequence[np.ndarray]) -> np.ndarray:
    """Equal ``tiles`` [S, S, 3] in rows of ceil(sqrt(N)), filled up with white tiles: [rows * S, columns * S, 3]."""
    columns = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    padded = list(tiles) + [np.full_like(tiles[0], 255)] * (rows * columns - len(tiles))
    return np.vstack([np.hstack(padded[r * columns : (r + 1) * columns]) for r in range(rows)])
