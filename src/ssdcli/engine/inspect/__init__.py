"""``ssd encode``: how SSD assigns default boxes to ground truth, for one image or a whole data set.

- :mod:`.layouts`: the anchor layout, from a built-in name, a model architecture, a JSON file or a checkpoint;
- :mod:`.annotations`: one image's GTs from VOC XML or COCO JSON;
- :mod:`.image_report`: the per-GT matching of one image;
- :mod:`.coverage`: coverage statistics of a data set (batched, from the annotations alone);
- :mod:`.suggest`: aspect ratios and sizes fitted to a data set;
- :mod:`.visualize`: the pictures (files are written through :mod:`ssdcli.data.files`).
"""

from __future__ import annotations

from ssdcli.data.files import check_new_file, to_jsonable, write_json
from ssdcli.engine.inspect.annotations import GroundTruth, ImageAnnotation, read_annotation, read_image
from ssdcli.engine.inspect.coverage import (
    CoverageReport,
    GroupStats,
    GtSet,
    LayerStats,
    best_iou_nearest_cells,
    coverage_of,
    dataset_coverage,
    gt_best_iou,
    gt_set_from_index,
    load_gt_set,
)
from ssdcli.engine.inspect.image_report import GtReport, ImageReport, MatchedBox, encode_image, encode_image_file
from ssdcli.engine.inspect.layouts import NamedLayout, known_layout_names, layout_by_name, resolve_layout
from ssdcli.engine.inspect.sizes import SIZE_BUCKETS, size_bucket
from ssdcli.engine.inspect.suggest import Suggestion, suggest_layout, write_layout
from ssdcli.engine.inspect.visualize import (
    Figure,
    draw_coverage_report,
    draw_image_report,
    save_png,
    write_coverage_figure,
    write_image_figure,
)

__all__ = [
    "SIZE_BUCKETS",
    "CoverageReport",
    "Figure",
    "GroundTruth",
    "GroupStats",
    "GtReport",
    "GtSet",
    "ImageAnnotation",
    "ImageReport",
    "LayerStats",
    "MatchedBox",
    "NamedLayout",
    "Suggestion",
    "best_iou_nearest_cells",
    "check_new_file",
    "coverage_of",
    "dataset_coverage",
    "draw_coverage_report",
    "draw_image_report",
    "encode_image",
    "encode_image_file",
    "gt_best_iou",
    "gt_set_from_index",
    "known_layout_names",
    "layout_by_name",
    "load_gt_set",
    "read_annotation",
    "read_image",
    "resolve_layout",
    "save_png",
    "size_bucket",
    "suggest_layout",
    "to_jsonable",
    "write_coverage_figure",
    "write_image_figure",
    "write_json",
    "write_layout",
]
