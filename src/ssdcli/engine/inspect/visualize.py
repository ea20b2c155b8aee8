"""Pictures of ``ssd encode``: the matching of one image, layer by layer, and the coverage summary of a data set
as bar charts. What each picture shows is chosen here; the drawing is :mod:`ssdcli.viz`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ssdcli.data.images import write_image
from ssdcli.engine.inspect.coverage import CoverageReport, GroupStats
from ssdcli.engine.inspect.image_report import ImageReport
from ssdcli.errors import UsageError
from ssdcli.viz.charts import CHART_HEIGHT, CHART_WIDTH, bar_chart
from ssdcli.viz.colours import ALERT
from ssdcli.viz.figure import Figure, compose, panel_size
from ssdcli.viz.matching import matching_panels


def _layer_title(report: ImageReport, layer: int) -> str:
    layout = report.layout
    f = layout.feature_maps[layer]
    step = "" if layout.steps is None else f", step {layout.steps[layer]:g}"
    matches = sum(gt.matches_per_layer[layer] for gt in report.gts)
    return f"map {layer}: {f}x{f}{step}, {layout.boxes_per_cell[layer]}/cell - {matches} matched"


def draw_image_report(report: ImageReport, image_bgr: np.ndarray) -> Figure:
    """The GTs (first panel), then one panel per feature map with its grid and the default boxes matched to each
    GT in its class colour (grey when flagged), their IoU written beside their centre."""
    panel_wh = panel_size(report.width, report.height)
    pictures = matching_panels(image_bgr, (report.width, report.height), report.gts, report.layout, panel_wh)
    below = f", {report.below_threshold} without a box > {report.threshold:g}" if report.below_threshold else ""
    titles = [f"ground truth: {len(report.gts)} objects{below}"]
    titles += [_layer_title(report, k) for k in range(report.layout.num_layers)]
    rule = "threshold + best box" if report.best_anchor else "threshold only (reference)"
    header = (
        f"{report.image_path.name}  |  {report.layout_name}  |  IoU > {report.threshold:g}, {rule}  |  "
        f"{report.positives} positives, {report.negatives} negatives"
    )
    return compose(header, pictures, titles, panel_wh)


def _share_below_chart(groups: Sequence[GroupStats]) -> np.ndarray:
    """The share of each group's GTs without a default box above the threshold, as alert-coloured bars."""
    return bar_chart(
        [g.name for g in groups],
        [g.share_below for g in groups],
        [f"{g.below_threshold}/{g.gts}" for g in groups],
        1.0,
        [ALERT] * len(groups),
    )


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
        _share_below_chart(sizes),
        _share_below_chart(classes),
        bar_chart(
            [f"{layer.feature_map}x{layer.feature_map}" for layer in report.layers],
            [layer.matches / total if total else 0.0 for layer in report.layers],
            [str(layer.matches) for layer in report.layers],
            1.0,
        ),
        bar_chart(
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
    return compose(header, charts, titles, (CHART_WIDTH, CHART_HEIGHT), columns=2)


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write ``image`` (BGR uint8) as a PNG file, atomically; the name must end in .png."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UsageError("`visualize`: the picture is written as PNG; give a file name ending in .png", path=path)
    return write_image(path, image)


def write_image_figure(report: ImageReport, path: str | Path) -> Path:
    """Draw the matching of ``report`` on its image (read again from ``report.image_path``) into a PNG file."""
    from ssdcli.engine.inspect.annotations import read_image

    return save_png(path, draw_image_report(report, read_image(report.image_path)).image)


def write_coverage_figure(report: CoverageReport, path: str | Path) -> Path:
    """The coverage charts of a data set as a PNG file."""
    return save_png(path, draw_coverage_report(report).image)
