"""Detection metrics: COCO (through pycocotools' COCOeval), PASCAL VOC (the devkit's rules) and a confusion
summary, on data in memory.

Reading ground truth and results files is the engine's job (``ssdcli.engine.evaluate``); these modules compute.
Detections come as :class:`ssdcli.core.detections.Detections`.
"""

from __future__ import annotations

from .coco import (
    COCO_METRIC_FIELDS,
    COCO_METRIC_KEYS,
    CocoClassAP,
    CocoMetrics,
    CocoResult,
    coco_evaluate,
    per_category_ap,
)
from .confusion import Confusion, confusion_counts
from .voc import (
    VOC07_RECALL_THRESHOLDS,
    VocClassResult,
    VocImageGT,
    VocResult,
    average_precision,
    voc_evaluate,
)

__all__ = [
    "COCO_METRIC_FIELDS",
    "COCO_METRIC_KEYS",
    "VOC07_RECALL_THRESHOLDS",
    "CocoClassAP",
    "CocoMetrics",
    "CocoResult",
    "Confusion",
    "VocClassResult",
    "VocImageGT",
    "VocResult",
    "average_precision",
    "coco_evaluate",
    "confusion_counts",
    "per_category_ap",
    "voc_evaluate",
]
