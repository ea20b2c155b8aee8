"""``ssd eval`` in its three modes (:class:`~ssdcli.config.EvalConfig`), one entry and one result type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ssdcli.config import EvalConfig
from ssdcli.engine.evaluate.model import CheckpointEvaluation, evaluate_checkpoint
from ssdcli.engine.evaluate.results import evaluate_coco_files, evaluate_voc_files
from ssdcli.engine.events import EventHandler, ignore_events
from ssdcli.metrics.coco import CocoResult
from ssdcli.metrics.voc import VocResult


@dataclass(frozen=True)
class EvalOutcome:
    """What an evaluation found: VOC AP (modes voc and model), COCO metrics (coco and model), warnings about the
    inputs, and for a model the folder with its detections."""

    voc: VocResult | None
    coco: CocoResult | None
    warnings: tuple[str, ...] = ()
    model_run: CheckpointEvaluation | None = None

    def metrics(self) -> dict[str, Any]:
        """The figures as JSON-able data: COCO's named metrics, VOC's mAP and AP per class, or both."""
        if self.voc is None:
            assert self.coco is not None
            return self.coco.metrics.as_dict()
        found: dict[str, Any] = {"mAP": self.voc.mean_ap, "per_class": self.voc.ap_by_class()}
        if self.coco is not None:
            found["coco"] = self.coco.metrics.as_dict()
        return found


def run_eval(config: EvalConfig, emit: EventHandler = ignore_events) -> EvalOutcome:
    """Evaluate as ``config`` says; progress of a model's detection goes to ``emit``."""
    if config.mode == "coco":
        assert config.gt is not None and config.results is not None  # EvalConfig checked it
        coco = evaluate_coco_files(config.gt, config.results, per_class=config.per_class, backend=config.coco_backend)
        return EvalOutcome(None, coco)
    if config.mode == "voc":
        assert config.data is not None and config.results is not None
        voc = evaluate_voc_files(
            config.data,
            config.split or "test",
            config.results,
            classes=list(config.classes) if config.classes is not None else None,
            iou_threshold=config.iou,
            metric=config.voc_metric,  # type: ignore[arg-type]
        )
        return EvalOutcome(voc, None, tuple(voc.warnings))
    assert config.model is not None and config.data is not None
    run = evaluate_checkpoint(
        config.model,
        config.data,
        split=config.split,
        data_format=config.data_format,
        out=config.out,
        metric=config.voc_metric,
        iou_threshold=config.iou,
        batch_size=config.batch_size,
        device=config.device,
        per_class=config.per_class,
        plots=config.plots,
        emit=emit,
        model_format=config.model_format,
        force=config.force,
    )
    return EvalOutcome(run.evaluation.voc, run.evaluation.coco, model_run=run)
