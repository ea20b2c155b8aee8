"""What every evaluation returns: :class:`EvalOutcome`, and for a model the files it wrote (:class:`ModelRun`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssdcli.config import MIN_VALIDATION_OBJECTS
from ssdcli.metrics.coco import CocoResult
from ssdcli.metrics.voc import VocResult


@dataclass(frozen=True)
class ModelRun:
    """The files of a model's evaluation: its fresh run folder, the detections as a COCO results JSON, devkit files
    ``comp4_det_<split>_<class>.txt`` (VOC data sets) and the plots asked for."""

    run_dir: Path
    results_json: Path
    devkit_dir: Path | None
    plots: tuple[Path, ...] = ()


@dataclass(frozen=True)
class EvalOutcome:
    """What an evaluation found: VOC AP (results files of a VOC split, and detections of a data set), COCO metrics
    (results files against an instances file, and detections of a data set), warnings about the inputs, and for a
    model the files it wrote and, if it detected window by window, the tiling (recorded in :meth:`metrics`)."""

    voc: VocResult | None
    coco: CocoResult | None
    warnings: tuple[str, ...] = ()
    model_run: ModelRun | None = None
    tiling: dict[str, float] | None = None  # a model detected window by window: its window size and overlap
    flip: bool = False  # a model detected each image and its mirror image (test-time flip)

    def metrics(self) -> dict[str, Any]:
        """The figures as JSON-able data: COCO's named metrics, VOC's mAP and AP per class, or both."""
        if self.voc is None:
            assert self.coco is not None
            return self.coco.metrics.as_dict()
        found: dict[str, Any] = {"mAP": self.voc.mean_ap, "per_class": self.voc.ap_by_class()}
        if self.coco is not None:
            found["coco"] = self.coco.metrics.as_dict()
        if self.tiling is not None:
            found["tiling"] = self.tiling
        if self.flip:
            found["flip"] = True
        return found

    def training_metrics(self) -> dict[str, float]:
        """The columns of training's metrics: ``map50`` (the VOC mAP; VOC07 11-point at IoU 0.5 unless asked
        otherwise), ``coco_ap`` (AP@[.5:.95]) and ``select_map50``, what ``best.pt`` is chosen by: the VOC mAP over
        the classes with at least ``MIN_VALIDATION_OBJECTS`` objects (``map50`` when every class or none has)."""
        assert self.voc is not None and self.coco is not None
        return {
            "map50": float(self.voc.mean_ap),
            "coco_ap": float(self.coco.metrics.ap),
            "select_map50": self.voc.mean_ap_of_classes_with(MIN_VALIDATION_OBJECTS),
        }
