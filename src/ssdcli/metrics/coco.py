"""COCO box metrics through pycocotools' ``COCOeval``, wrapped once into named fields.

The three stages are COCOeval's own: ``evaluate`` (per image and category), ``accumulate`` (precision
[T, R, K, A, M] = IoU thresholds x recall thresholds x categories x area ranges x max detections) and
``summarize`` (the 12 numbers, turned here into :class:`CocoMetrics`). Nothing is recomputed: the named fields are
COCOeval's ``stats`` and per-category AP is read from its ``eval["precision"]``. COCOeval prints progress;
that output is captured so that callers can write clean output of their own.

Two cases pycocotools does not handle are handled here: an empty results list (``COCO.loadRes`` fails on it;
the results are then an empty set of detections, giving AP 0 wherever there is ground truth) and ground truth
annotations without ``iscrowd`` or ``area`` (taken as 0 and as the box area w * h).
Metrics with no ground truth in their area range are -1, as in pycocotools.

One addition, off by default: ``ignore_key`` names an annotation flag (``"difficult"`` for PASCAL VOC objects)
whose objects are ignored the way COCOeval ignores crowd regions (not counted as ground truth; any number of
detections matched to one are neither true nor false positives) but matched with the ordinary IoU. Marking them
``iscrowd`` in the file would also change their IoU to intersection / detection area, under which a small
detection inside a large difficult object is ignored where the VOC devkit counts it as a false positive.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ssdcli.config import COCO_BACKENDS, DEFAULT_COCO_BACKEND
from ssdcli.errors import UsageError

# JSON key, field name and the setting of COCOeval's summary line, in the order of COCOeval.stats.
COCO_METRIC_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("AP", "ap", "IoU 0.50:0.95, all areas, 100 dets"),
    ("AP50", "ap50", "IoU 0.50, all areas, 100 dets"),
    ("AP75", "ap75", "IoU 0.75, all areas, 100 dets"),
    ("APs", "ap_small", "IoU 0.50:0.95, small (area < 32²), 100 dets"),
    ("APm", "ap_medium", "IoU 0.50:0.95, medium (32² to 96²), 100 dets"),
    ("APl", "ap_large", "IoU 0.50:0.95, large (area > 96²), 100 dets"),
    ("AR1", "ar1", "IoU 0.50:0.95, all areas, 1 det"),
    ("AR10", "ar10", "IoU 0.50:0.95, all areas, 10 dets"),
    ("AR100", "ar100", "IoU 0.50:0.95, all areas, 100 dets"),
    ("ARs", "ar_small", "IoU 0.50:0.95, small, 100 dets"),
    ("ARm", "ar_medium", "IoU 0.50:0.95, medium, 100 dets"),
    ("ARl", "ar_large", "IoU 0.50:0.95, large, 100 dets"),
)
COCO_METRIC_KEYS: tuple[str, ...] = tuple(key for key, _, _ in COCO_METRIC_FIELDS)


@dataclass(frozen=True)
class CocoMetrics:
    """COCOeval's 12 summary numbers by name (-1 where there is no ground truth for that setting)."""

    ap: float
    ap50: float
    ap75: float
    ap_small: float
    ap_medium: float
    ap_large: float
    ar1: float
    ar10: float
    ar100: float
    ar_small: float
    ar_medium: float
    ar_large: float

    @classmethod
    def from_stats(cls, stats: Sequence[float]) -> CocoMetrics:
        """From COCOeval's ``stats`` vector [12]."""
        if len(stats) != len(COCO_METRIC_FIELDS):
            raise ValueError(f"COCOeval stats: expected {len(COCO_METRIC_FIELDS)} numbers, got {len(stats)}")
        return cls(**{name: float(value) for (_, name, _), value in zip(COCO_METRIC_FIELDS, stats)})

    def as_dict(self) -> dict[str, float]:
        """The 12 numbers under their usual keys: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl."""
        return {key: getattr(self, name) for key, name, _ in COCO_METRIC_FIELDS}


@dataclass(frozen=True)
class CocoClassAP:
    """AP @ IoU 0.50:0.95 (all areas, 100 dets) of one category; NaN when it has no non-crowd ground truth."""

    category_id: int
    name: str
    ap: float
    num_gt: int


@dataclass(frozen=True)
class CocoResult:
    metrics: CocoMetrics
    per_class: tuple[CocoClassAP, ...]
    num_images: int
    num_detections: int
    backend: str


def per_category_ap(precision: np.ndarray) -> np.ndarray:
    """AP per category [K] from COCOeval's ``eval["precision"]`` [T, R, K, A, M].

    Area range "all" (index 0), the largest max-detections setting (last index), the mean over IoU and recall
    thresholds of the entries that are not -1; NaN for a category with no such entry.
    """
    per_cat = precision[:, :, :, 0, -1]  # [T, R, K]
    out = np.full(per_cat.shape[2], np.nan)
    for k in range(per_cat.shape[2]):
        values = per_cat[:, :, k]
        values = values[values > -1]
        if values.size:
            out[k] = float(np.mean(values))
    return out


def _backend(backend: str) -> tuple[Any, Any]:
    """The (COCO, COCOeval) classes of a backend."""
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    if backend == "faster-coco-eval":
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError:
            raise UsageError(
                "the faster-coco-eval backend needs the optional package faster-coco-eval: "
                "pip install faster-coco-eval (or use `backend` pycocotools)"
            ) from None
        return COCO, COCOeval_faster
    raise UsageError(f"unknown COCO backend {backend!r}; expected one of {', '.join(COCO_BACKENDS)}")


def _ground_truth(coco_cls: Any, gt: Mapping[str, Any]) -> Any:
    """A COCO object over a copy of ``gt`` (COCOeval writes flags into annotations; the caller's stay untouched)."""
    annotations = []
    for ann in gt.get("annotations", []):
        ann = dict(ann)
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
        annotations.append(ann)
    coco = coco_cls()
    coco.dataset = {**gt, "annotations": annotations}
    coco.createIndex()
    return coco


def _ignoring(eval_cls: Any, ignore_key: str) -> Any:
    """``eval_cls`` that ignores the ground truth flagged ``ignore_key`` with the ordinary IoU.

    COCOeval computes every IoU (``computeIoU``, with the crowd rule for ``iscrowd`` objects) before it matches
    any image (``evaluateImg``). The flagged objects enter the IoU as ordinary boxes and are marked crowd right
    after: ignored, and free to absorb any number of detections, as the VOC devkit lets a difficult object do.
    """

    class IgnoringEval(eval_cls):  # type: ignore[misc]
        def computeIoU(self, imgId: Any, catId: Any) -> Any:  # noqa: N802, N803 (COCOeval's names)
            ious = super().computeIoU(imgId, catId)
            for ann in self._gts[imgId, catId]:
                if ann.get(ignore_key):
                    ann["iscrowd"] = ann["ignore"] = 1
            return ious

    return IgnoringEval


def _detections(coco_gt: Any, coco_cls: Any, results: Sequence[Mapping[str, Any]]) -> Any:
    """The results as a COCO object: ``loadRes`` on copies of the dicts; an empty COCO set for no results."""
    if results:
        return coco_gt.loadRes([dict(r) for r in results])
    empty = coco_cls()
    empty.dataset = {
        "info": copy.deepcopy(coco_gt.dataset.get("info", {})),
        "images": list(coco_gt.dataset.get("images", [])),
        "categories": copy.deepcopy(coco_gt.dataset.get("categories", [])),
        "annotations": [],
    }
    empty.createIndex()
    return empty


def coco_evaluate(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    *,
    per_class: bool = False,
    backend: str = DEFAULT_COCO_BACKEND,
    ignore_key: str | None = None,
) -> CocoResult:
    """COCOeval (bbox, default parameters) of ``results`` against the COCO ground truth dict ``gt``.

    ``gt`` holds ``images``, ``annotations`` and ``categories``; ``results`` are dicts
    ``{image_id, category_id, bbox [x, y, w, h] pixels, score}`` whose ids exist in ``gt`` (the engine checks
    that). With ``per_class``, AP per category in the order of ``gt["categories"]``. ``ignore_key``: annotations
    with a true value under this key are ignored (see the module docstring; pycocotools backend only).
    """
    coco_cls, eval_cls = _backend(backend)
    if ignore_key is not None:
        if backend != "pycocotools":
            raise UsageError(f"ignoring {ignore_key!r} objects needs the pycocotools backend")
        eval_cls = _ignoring(eval_cls, ignore_key)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = _ground_truth(coco_cls, gt)
        coco_dt = _detections(coco_gt, coco_cls, results)
        evaluator = eval_cls(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    metrics = CocoMetrics.from_stats(list(evaluator.stats))
    classes: tuple[CocoClassAP, ...] = ()
    if per_class:
        cat_ids = list(evaluator.params.catIds)  # COCOeval's order: sorted ids, the K axis of precision
        ap = per_category_ap(np.asarray(evaluator.eval["precision"]))
        ap_by_id = dict(zip(cat_ids, ap))
        num_gt = {cat_id: 0 for cat_id in cat_ids}
        for ann in coco_gt.dataset["annotations"]:
            ignored = ann.get("iscrowd", 0) or (ignore_key is not None and ann.get(ignore_key, False))
            if not ignored and ann["category_id"] in num_gt:
                num_gt[ann["category_id"]] += 1
        classes = tuple(
            CocoClassAP(cat["id"], str(cat.get("name", cat["id"])), float(ap_by_id[cat["id"]]), num_gt[cat["id"]])
            for cat in gt.get("categories", [])
        )
    return CocoResult(metrics, classes, len(gt.get("images", [])), len(results), backend)
