"""Pictures of ``ssd encode``, drawn with OpenCV: the matching of one image, layer by layer, and the coverage
summary of a data set as bar charts.

Figure geometry (pixels): panels are tiled left to right, top to bottom, at most :data:`COLUMNS` per row, below a
header of :data:`HEADER_HEIGHT`; every panel has a title bar of :data:`TITLE_HEIGHT` above it and :data:`GAP`
around it. A panel shows the image at its own aspect ratio, the longer side :data:`PANEL_SIDE`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ssdcli.core.anchors import AnchorLayout
from ssdcli.errors import UsageError

from ssdcli.engine.inspect.coverage import CoverageReport
from ssdcli.engine.inspect.image_report import GtReport, ImageReport
from ssdcli.data.files import write_atomic

PANEL_SIDE = 400
TITLE_HEIGHT = 26
HEADER_HEIGHT = 34
GAP = 8
COLUMNS = 4
#: Image brightness under the drawing, so that the coloured boxes stand out.
DIM = 0.55
GRID_ALPHA = 0.3
FONT = cv2.FONT_HERSHEY_SIMPLEX
BACKGROUND = (32, 32, 32)
PANEL_BACKGROUND = (48, 48, 48)
TEXT = (240, 240, 240)
#: BGR colours of GT 0, 1, 2, ... (repeating); flagged GTs (difficult, crowd, empty) are drawn in FLAGGED.
GT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (0, 215, 255),  # gold
    (255, 160, 40),  # azure
    (60, 220, 60),  # green
    (80, 80, 255),  # red
    (255, 90, 220),  # violet
    (0, 140, 255),  # orange
    (230, 230, 60),  # cyan
    (150, 255, 180),  # mint
    (180, 120, 255),  # pink
    (40, 200, 170),  # olive
)
FLAGGED = (150, 150, 150)
CHART_WIDTH = 560
CHART_HEIGHT = 330
BAR_COLOUR = (255, 160, 40)
ALERT_COLOUR = (80, 80, 255)


def gt_colour(gt: GtReport) -> tuple[int, int, int]:
    """The BGR colour a GT and its default boxes are drawn in."""
    return FLAGGED if gt.flag else GT_COLOURS[gt.index % len(GT_COLOURS)]


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


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.5, colour=TEXT, thickness: int = 1) -> None:
    cv2.putText(canvas, text, origin, FONT, scale, colour, thickness, cv2.LINE_AA)


def _fit(text: str, width: int, scale: float) -> str:
    """``text`` shortened with '..' to fit ``width`` px at font ``scale``."""
    while len(text) > 3 and cv2.getTextSize(text, FONT, scale, 1)[0][0] > width:
        text = text[:-3] + ".."
    return text


def _tag(canvas: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int], scale: float = 0.4) -> None:
    """A filled label in ``colour`` with dark text, its bottom-left at (x, y), moved inside the canvas."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    x = int(min(max(x, 0), max(canvas.shape[1] - tw - 2, 0)))
    y = int(min(max(y, th + base + 2), canvas.shape[0]))
    cv2.rectangle(canvas, (x, y - th - base - 2), (x + tw + 2, y), colour, -1)
    _text(canvas, text, (x + 1, y - base - 1), scale, (20, 20, 20))


def _px(box: Sequence[float], sx: float, sy: float) -> tuple[tuple[int, int], tuple[int, int]]:
    x1, y1, x2, y2 = box
    return (int(round(x1 * sx)), int(round(y1 * sy))), (int(round(x2 * sx)), int(round(y2 * sy)))


def _grid(canvas: np.ndarray, layout: AnchorLayout, layer: int) -> None:
    """Cell edges of feature map ``layer`` over the panel (the input square stretched to the image)."""
    height, width = canvas.shape[:2]
    f = layout.feature_maps[layer]
    cell = 1.0 / f if layout.steps is None else layout.steps[layer] / layout.image_size
    overlay = canvas.copy()
    for j in range(f + 1):
        edge = min(j * cell, 1.0)
        x, y = int(round(edge * (width - 1))), int(round(edge * (height - 1)))
        cv2.line(overlay, (x, 0), (x, height - 1), (255, 255, 255), 1)
        cv2.line(overlay, (0, y), (width - 1, y), (255, 255, 255), 1)
    cv2.addWeighted(overlay, GRID_ALPHA, canvas, 1 - GRID_ALPHA, 0, dst=canvas)


def _muted(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(int(0.45 * c + 0.55 * 110) for c in colour)  # type: ignore[return-value]


def _gt_boxes(
    canvas: np.ndarray, gts: Sequence[GtReport], sx: float, sy: float, labels: bool, layer: int | None = None
) -> None:
    """GT boxes, 2 px in their colour; on a layer panel, GTs without a match on that layer are thin and muted."""
    for gt in gts:
        top_left, bottom_right = _px(gt.box_xyxy, sx, sy)
        active = layer is None or gt.matches_per_layer[layer] > 0
        colour = gt_colour(gt) if active else _muted(gt_colour(gt))
        cv2.rectangle(canvas, top_left, bottom_right, colour, 2 if active else 1)
        if labels:
            note = f" [{gt.flag}]" if gt.flag else ""
            _tag(canvas, f"#{gt.index} {gt.class_name} {gt.best_iou:.2f}{note}", top_left[0] - 1, top_left[1] - 2, colour)


#: On a layer panel with more matched default boxes than this, only each GT's best one there gets its IoU written.
MAX_IOU_LABELS = 30


def _layer_panel(base: np.ndarray, report: ImageReport, layer: int, sx: float, sy: float) -> np.ndarray:
    canvas = base.copy()
    _grid(canvas, report.layout, layer)
    label_all = sum(gt.matches_per_layer[layer] for gt in report.gts) <= MAX_IOU_LABELS
    for gt in report.gts:
        boxes = [b for b in gt.matched if b.layer == layer]
        best = max(boxes, key=lambda b: b.iou) if boxes else None
        for box in boxes:
            top_left, bottom_right = _px(box.box_xyxy, sx, sy)
            cv2.rectangle(canvas, top_left, bottom_right, gt_colour(gt), 1)
            centre = ((top_left[0] + bottom_right[0]) // 2, (top_left[1] + bottom_right[1]) // 2)
            cv2.circle(canvas, centre, 2, gt_colour(gt), -1)
            if label_all or box is best:
                corner = (max(top_left[0], 0) + 2, max(top_left[1], 0) + 10)
                _text(canvas, f"{box.iou:.2f}", corner, 0.35, gt_colour(gt))
    _gt_boxes(canvas, report.gts, sx, sy, labels=False, layer=layer)
    return canvas


def _layer_title(report: ImageReport, layer: int) -> str:
    layout = report.layout
    f = layout.feature_maps[layer]
    step = "" if layout.steps is None else f", step {layout.steps[layer]:g}"
    matches = sum(gt.matches_per_layer[layer] for gt in report.gts)
    return f"map {layer}: {f}x{f}{step}, {layout.boxes_per_cell[layer]}/cell - {matches} matched"


def _compose(
    header: str,
    pictures: Sequence[np.ndarray],
    titles: Sequence[str],
    panel_wh: tuple[int, int],
    columns: int = COLUMNS,
) -> Figure:
    width, height = figure_size(len(pictures), panel_wh, columns)
    figure = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    _text(figure, _fit(header, width - 2 * GAP, 0.6), (GAP, HEADER_HEIGHT - 10), 0.6)
    panels = []
    for index, (picture, title) in enumerate(zip(pictures, titles)):
        x, y = panel_origin(index, len(pictures), panel_wh, columns)
        figure[y : y + panel_wh[1], x : x + panel_wh[0]] = picture
        _text(figure, _fit(title, panel_wh[0], 0.5), (x + 2, y - 8), 0.5)
        panels.append(Panel(x, y, panel_wh[0], panel_wh[1], title))
    return Figure(figure, tuple(panels))


def draw_image_report(report: ImageReport, image_bgr: np.ndarray) -> Figure:
    """The GTs (first panel), then one panel per feature map with its grid and the default boxes matched to each
    GT in the GT's colour, their IoU written beside their centre."""
    panel_wh = panel_size(report.width, report.height)
    resized = cv2.resize(image_bgr, panel_wh, interpolation=cv2.INTER_AREA)
    base = (resized.astype(np.float32) * DIM).astype(np.uint8)
    sx, sy = panel_wh[0] / report.width, panel_wh[1] / report.height
    gt_panel = base.copy()
    _gt_boxes(gt_panel, report.gts, sx, sy, labels=True)
    pictures = [gt_panel] + [_layer_panel(base, report, k, sx, sy) for k in range(report.layout.num_layers)]
    below = f", {report.below_threshold} without a box > {report.threshold:g}" if report.below_threshold else ""
    titles = [f"ground truth: {len(report.gts)} objects{below}"]
    titles += [_layer_title(report, k) for k in range(report.layout.num_layers)]
    rule = "threshold + best box" if report.best_anchor else "threshold only (reference)"
    header = (
        f"{report.image_path.name}  |  {report.layout_name}  |  IoU > {report.threshold:g}, {rule}  |  "
        f"{report.positives} positives, {report.negatives} negatives"
    )
    return _compose(header, pictures, titles, panel_wh)


def _bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    notes: Sequence[str],
    vmax: float,
    colours: Sequence[tuple[int, int, int]] | None = None,
    marker: float | None = None,
) -> np.ndarray:
    """A vertical bar chart [CHART_HEIGHT, CHART_WIDTH, 3]; ``notes`` are written above the bars; ``marker`` draws
    a dashed vertical line at that fraction of the x axis."""
    chart = np.full((CHART_HEIGHT, CHART_WIDTH, 3), PANEL_BACKGROUND, dtype=np.uint8)
    left, right, top, bottom = 44, CHART_WIDTH - 10, 24, CHART_HEIGHT - 30
    cv2.line(chart, (left, bottom), (right, bottom), TEXT, 1)
    cv2.line(chart, (left, top), (left, bottom), TEXT, 1)
    vmax = vmax if vmax > 0 else 1.0
    for tick in (0.0, 0.5, 1.0):
        y = int(bottom - tick * (bottom - top))
        cv2.line(chart, (left - 3, y), (left, y), TEXT, 1)
        value = tick * vmax
        _text(chart, f"{value:.0%}" if vmax <= 1.0 else f"{value:.3g}", (2, y + 4), 0.33)
    count = max(len(values), 1)
    slot = (right - left) / count
    label_scale = 0.38 if slot > 40 else 0.3
    for n, (label, value, note) in enumerate(zip(labels, values, notes)):
        x1 = int(left + n * slot + slot * 0.15)
        x2 = int(left + (n + 1) * slot - slot * 0.15)
        y = int(bottom - min(value / vmax, 1.0) * (bottom - top))
        colour = colours[n] if colours is not None else BAR_COLOUR
        if y < bottom:
            cv2.rectangle(chart, (x1, y), (max(x2, x1 + 1), bottom), colour, -1)
        _text(chart, _fit(note, int(slot), 0.33), (x1, max(y - 4, top - 4)), 0.33)
        _text(chart, _fit(label, int(slot), label_scale), (x1, bottom + 16), label_scale)
    if marker is not None:
        x = int(left + marker * (right - left))
        for y in range(top, bottom, 8):
            cv2.line(chart, (x, y), (x, min(y + 4, bottom)), ALERT_COLOUR, 1)
    return chart


#: Classes shown in the per-class chart (those with the largest share below the threshold).
MAX_CLASSES_DRAWN = 16


def draw_coverage_report(report: CoverageReport) -> Figure:
    """Four bar charts: share of GTs without a default box above the threshold by size and by class, positives
    per feature map, and the distribution of each GT's best IoU (threshold marked)."""
    sizes = report.by_size
    classes = sorted(report.by_class, key=lambda g: (-g.share_below, g.name))[:MAX_CLASSES_DRAWN]
    worst = "" if len(classes) == len(report.by_class) else f" (worst {len(classes)} of {len(report.by_class)})"
    thr = f"{report.threshold:g}"
    total = sum(layer.matches for layer in report.layers)
    charts = [
        _bar_chart(
            [g.name for g in sizes],
            [g.share_below for g in sizes],
            [f"{g.below_threshold}/{g.gts}" for g in sizes],
            1.0,
            [ALERT_COLOUR] * len(sizes),
        ),
        _bar_chart(
            [g.name for g in classes],
            [g.share_below for g in classes],
            [f"{g.below_threshold}/{g.gts}" for g in classes],
            1.0,
            [ALERT_COLOUR] * len(classes),
        ),
        _bar_chart(
            [f"{layer.feature_map}x{layer.feature_map}" for layer in report.layers],
            [layer.matches / total if total else 0.0 for layer in report.layers],
            [str(layer.matches) for layer in report.layers],
            1.0,
        ),
        _bar_chart(
            [f"{k / 10:.1f}" for k in range(len(report.iou_histogram))],
            [c / report.gts if report.gts else 0.0 for c in report.iou_histogram],
            [str(c) for c in report.iou_histogram],
            max(max(report.iou_histogram, default=0) / max(report.gts, 1), 1e-9),
            marker=report.threshold,
        ),
    ]
    titles = [
        f"GTs with no default box > {thr}, by size (sqrt(area), input px)",
        f"GTs with no default box > {thr}, by class{worst}",
        f"share of positives per feature map ({total} in all)",
        f"best IoU of each GT (threshold {thr} dashed)",
    ]
    header = (
        f"{Path(report.source).name or report.source}  |  {report.layout_name}  |  {report.images} images, "
        f"{report.gts} GTs  |  coverage {report.coverage:.1%}  |  positives/image {report.positives_mean:.1f}"
    )
    return _compose(header, charts, titles, (CHART_WIDTH, CHART_HEIGHT), columns=2)


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write ``image`` (BGR uint8) as a PNG file, atomically; the name must end in .png."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UsageError("`visualize`: the picture is written as PNG; give a file name ending in .png", path=path)
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise UsageError("could not encode the picture as PNG", path=path)
    return write_atomic(path, data.tobytes())


def write_image_figure(report: ImageReport, path: str | Path) -> Path:
    """Draw the matching of ``report`` on its image (read again from ``report.image_path``) into a PNG file."""
    from ssdcli.engine.inspect.annotations import read_image

    return save_png(path, draw_image_report(report, read_image(report.image_path)).image)


def write_coverage_figure(report: CoverageReport, path: str | Path) -> Path:
    """The coverage charts of a data set as a PNG file."""
    return save_png(path, draw_coverage_report(report).image)
