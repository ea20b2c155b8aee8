"""``ssd eval --checkpoint`` (also ``--onnx``, ``--torchscript``): run a trained model over a data set split, write
its detections, evaluate them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ssdcli.data.dataset import open_index
from ssdcli.data.results_io import write_coco_results, write_devkit_detections

from .device import resolve_device
from .events import EventHandler, Message, ignore_events
from .detectors import load_detector
from .inference import detect_index_with
from .plots import write_evaluation_plots
from .rundir import fresh_run_dir
from .validation import DetectionEvaluation, evaluate_detections


@dataclass(frozen=True)
class CheckpointEvaluation:
    run_dir: Path
    evaluation: DetectionEvaluation
    results_json: Path
    devkit_dir: Path | None  # VOC data sets: comp4_det_<split>_<class>.txt files
    plots: tuple[Path, ...] = ()


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    split: str | None = None,
    data_format: str = "auto",
    out: str | Path = "runs/eval",
    metric: str = "voc07",
    iou_threshold: float = 0.5,
    batch_size: int = 16,
    device: str = "auto",
    per_class: bool = False,
    plots: str | Path | None = None,
    emit: EventHandler = ignore_events,
    model_format: str = "checkpoint",
) -> CheckpointEvaluation:
    """Detections of ``checkpoint`` on ``data``/``split`` (score threshold 0.01, as evaluation wants), written as
    a COCO results JSON (and devkit files for VOC) into a fresh run folder, then evaluated. ``split`` None: "test"
    of a data set root, or the split a COCO file holds. With ``plots``,
    precision-recall curves per class and a confusion summary go there as PNG files.

    ``model_format`` says what ``checkpoint`` is: "checkpoint", "onnx" (with or without NMS in the graph),
    "torchscript", or "auto" (from the file name). Every form runs through the same data pipeline and
    evaluators, so an export's figures are comparable with its checkpoint's to the last digit the runtimes allow."""
    detector = load_detector(checkpoint, model_format, resolve_device(device))
    info = detector.info
    index = open_index(data, split, data_format, info.class_names[1:], default_split="test")
    if index.warnings.summary():
        emit(Message(f"{index.split}: {index.warnings.summary()}", "warning"))
    detections = detect_index_with(
        detector.detect, index, info.layout.image_size, info.mean, info.std, batch_size, emit=emit
    )
    evaluation = evaluate_detections(index, detections, metric, iou_threshold, per_class)
    run_dir = fresh_run_dir(out)
    results_json = write_coco_results(run_dir / "detections.json", evaluation.coco_results)
    devkit_dir = None
    if index.format == "voc":
        devkit_dir = run_dir / "devkit"
        devkit_dir.mkdir()
        write_devkit_detections(devkit_dir, evaluation.voc_detections, index.class_names[1:], index.split)
    drawn: tuple[Path, ...] = ()
    if plots is not None:
        drawn = tuple(write_evaluation_plots(Path(plots), evaluation.voc, index, detections))
    return CheckpointEvaluation(run_dir, evaluation, results_json, devkit_dir, drawn)
