"""Text on OpenCV canvases: one font, colours from the scheme (RGB), text shortened to fit."""

from __future__ import annotations

import cv2
import numpy as np

from ssdcli.viz.colours import BLACK, Colour, bgr

FONT = cv2.FONT_HERSHEY_SIMPLEX


def put_text(
    canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.5, colour: Colour = BLACK
) -> None:
    """Write ``text`` on ``canvas`` [H, W, 3] BGR in place, its baseline starting at ``origin`` (x, y)."""
    cv2.putText(canvas, text, origin, FONT, scale, bgr(colour), 1, cv2.LINE_AA)


def fit_text(text: str, width: int, scale: float) -> str:
    """``text`` shortened with '..' to fit ``width`` px at font ``scale``."""
    while len(text) > 3 and cv2.getTextSize(text, FONT, scale, 1)[0][0] > width:
        text = text[:-3] + ".."
    return text
