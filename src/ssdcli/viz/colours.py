"""One colour scheme for every picture: a colour per class name, fixed colours for ground truth, flagged objects,
text and backgrounds. Colours are RGB tuples; :func:`bgr` turns one into OpenCV's order."""

from __future__ import annotations

import colorsys
import zlib

Colour = tuple[int, int, int]

GOLDEN_RATIO = 0.618033988749895
#: Ground-truth boxes drawn beside detections (training pictures).
GROUND_TRUTH: Colour = (0, 255, 0)
#: Objects that are not training targets (difficult, crowd, empty).
FLAGGED: Colour = (150, 150, 150)
WHITE: Colour = (255, 255, 255)
BLACK: Colour = (0, 0, 0)
GRID_LINE: Colour = (200, 200, 200)
#: Dark figures (``ssd encode``): background, panel background, text.
BACKGROUND: Colour = (32, 32, 32)
PANEL_BACKGROUND: Colour = (48, 48, 48)
TEXT: Colour = (240, 240, 240)
DARK_TEXT: Colour = (20, 20, 20)
BAR: Colour = (40, 160, 255)
ALERT: Colour = (255, 80, 80)


def class_colour(name: str) -> Colour:
    """The RGB colour of class ``name``: depends only on the name, so a class looks the same in every picture of
    every command (the hue is spread from a checksum of the name)."""
    hue = (zlib.crc32(name.encode("utf-8")) * GOLDEN_RATIO) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def muted(colour: Colour) -> Colour:
    """``colour`` pulled towards grey: for things shown but not in focus."""
    r, g, b = (round(0.45 * c + 0.55 * 110) for c in colour)
    return r, g, b


def bgr(colour: Colour) -> Colour:
    """An RGB colour in OpenCV's BGR order (and back)."""
    return colour[2], colour[1], colour[0]
