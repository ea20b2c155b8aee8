"""``ssd eval --checkpoint``: run a trained model over a data set split, write its detections, evaluate them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ssdcli.core.anchors import default_boxes
from ssdcli.data.dataset import open_index
from ssdcli.data.results_io import write_coco_results, write_devkit_detections
from ssdcli.errors import UsageError

from .device import resolve_device
from .events import EventHandler, Message, ignore_events
from .inference import detect_index
from .loading import load_model
from .outputs import check_new_file
from .plots import evaluation_plot_paths, write_evaluation_plots
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
    split: str = "test",
    data_format: str = "auto",
    out: str | Path = "runs/eval",
    metric: str = "voc07",
    iou_threshold: float = 0.5,
    batch_size: int = 16,
    device: str = "auto",
    per_class: bool = False,
    plots: str | Path | None = None,
    emit: EventHandler = ignore_events,
    force: bool = False,
) -> CheckpointEvaluation:
    """Detections of ``checkpoint`` on ``data``/``split`` (score threshold 0.01, as evaluation wants), written as
    a COCO results JSON (and devkit files for VOC) into a fresh run folder, then evaluated. With ``plots``,
    precision-recall curves per class and a confusion summary go there as PNG files; one that exists already
    stops the run before any detection unless ``force``."""
    torch_device = resolve_device(device)
    loaded = load_model(checkpoint, torch_device)
    index = open_index(data, split, data_format, loaded.class_names[1:])
    if index.warnings.summary():
        emit(Message(f"{split}: {index.warnings.summary()}", "warning"))
    if plots is not None:
        _check_plot_folder(Path(plots), index.class_names[1:], force)
    anchors = default_boxes(loaded.config.layout, device=torch_device)
    detections = detect_index(loaded.model, index, anchors, torch_device, batch_size, emit=emit)
    evaluation = evaluate_detections(index, detections, metric, iou_threshold, per_class)
    run_dir = fresh_run_dir(out)
    results_json = write_coco_results(run_dir / "detections.json", evaluation.coco_results)
    devkit_dir = None
    if index.format == "voc":
        devkit_dir = run_dir / "devkit"
        devkit_dir.mkdir()
        write_devkit_detections(devkit_dir, evaluation.voc_detections, index.class_names[1:], split)
    drawn: tuple[Path, ...] = ()
    if plots is not None:
        drawn = tuple(write_evaluation_plots(Path(plots), evaluation.voc, index, detections))
    return CheckpointEvaluation(run_dir, evaluation, results_json, devkit_dir, drawn)


def _check_plot_folder(folder: Path, class_names: Sequence[str], force: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise UsageError("exists and is not a folder", path=folder)
    for path in evaluation_plot_paths(folder, class_names):
        check_new_file(path, force)
