"""Figures of panels (the pictures of ``ssd encode``): a header line, then panels tiled left to right, top to
bottom, at most :data:`COLUMNS` per row, each below a title bar of :data:`TITLE_HEIGHT` with :data:`GAP` around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ssdcli.viz.colours import BACKGROUND, TEXT, bgr
from ssdcli.viz.text import fit_text, put_text

PANEL_SIDE = 400
TITLE_HEIGHT = 26
HEADER_HEIGHT = 34
GAP = 8
COLUMNS = 4


@dataclass(frozen=True)
class Panel:
    """Where a panel's picture lies in the figure (x, y of its top-left pixel, width, height) and its title."""

    x: int
    y: int
    width: int
    height: int
    title: str


@dataclass(frozen=True)
class Figure:
    """A drawn figure: BGR uint8 [H, W, 3] and its panels."""

    image: np.ndarray
    panels: tuple[Panel, ...]


def panel_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of a panel showing a ``width`` x ``height`` image: longer side PANEL_SIDE."""
    scale = PANEL_SIDE / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def figure_size(panels: int, panel_wh: tuple[int, int], columns: int = COLUMNS) -> tuple[int, int]:
    """(width, height) of a figure of ``panels`` panels of ``panel_wh`` each, at most ``columns`` per row."""
    columns = min(columns, panels)
    rows = -(-panels // columns)
    return GAP + columns * (panel_wh[0] + GAP), HEADER_HEIGHT + GAP + rows * (TITLE_HEIGHT + panel_wh[1] + GAP)


def panel_origin(index: int, panels: int, panel_wh: tuple[int, int], columns: int = COLUMNS) -> tuple[int, int]:
    """(x, y) of the top-left pixel of panel ``index``'s picture (below its title bar)."""
    columns = min(columns, panels)
    row, column = divmod(index, columns)
    return GAP + column * (panel_wh[0] + GAP), HEADER_HEIGHT + GAP + row * (TITLE_HEIGHT + panel_wh[1] + GAP) + TITLE_HEIGHT


def compose(
    header: str,
    pictures: Sequence[np.ndarray],
    titles: Sequence[str],
    panel_wh: tuple[int, int],
    columns: int = COLUMNS,
) -> Figure:
    """``pictures`` (each BGR [panel_wh[1], panel_wh[0], 3]) with their ``titles`` tiled under ``header``."""
    width, height = figure_size(len(pictures), panel_wh, columns)
    figure = np.full((height, width, 3), bgr(BACKGROUND), dtype=np.uint8)
    put_text(figure, fit_text(header, width - 2 * GAP, 0.6), (GAP, HEADER_HEIGHT - 10), 0.6, TEXT)
    panels = []
    for index, (picture, title) in enumerate(zip(pictures, titles)):
        x, y = panel_origin(index, len(pictures), panel_wh, columns)
        figure[y : y + panel_wh[1], x : x + panel_wh[0]] = picture
        put_text(figure, fit_text(title, panel_wh[0], 0.5), (x + 2, y - 8), 0.5, TEXT)
        panels.append(Panel(x, y, panel_wh[0], panel_wh[1], title))
    return Figure(figure, tuple(panels))
