"""``ssd eval --checkpoint`` (also ``--onnx``, ``--torchscript``): run a trained model over a data set split, write
its detections, evaluate them."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssdcli.data.dataset import open_index
from ssdcli.data.records import DatasetIndex
from ssdcli.data.results_io import write_coco_results, write_devkit_detections
from ssdcli.errors import DataError, UsageError

from ssdcli.engine.inference.detectors import LoadedDetector, load_detector
from ssdcli.engine.device import resolve_device
from ssdcli.engine.events import EventHandler, Message, ignore_events
from ssdcli.data.detections import Detections
from ssdcli.engine.inference.batched import detect_index_with
from ssdcli.data.files import check_new_file
from ssdcli.engine.evaluate.plots import evaluation_plot_paths, write_evaluation_plots
from ssdcli.data.files import fresh_run_dir
from ssdcli.engine.evaluate.validation import DetectionEvaluation, evaluate_detections


@dataclass(frozen=True)
class CheckpointEvaluation:
    run_dir: Path
    evaluation: DetectionEvaluation
    results_json: Path
    devkit_dir: Path | None  # VOC data sets: comp4_det_<split>_<class>.txt files
    plots: tuple[Path, ...] = ()


def _open_for(loaded: LoadedDetector, data: str | Path, split: str | None, data_format: str) -> DatasetIndex:
    """The split with the model's classes; for torchvision's detectors (COCO's 91-index label space, 'N/A'
    placeholders) the data's own classes, each of which must be one of the detector's."""
    names = loaded.info.class_names
    if loaded.pretrained is None:
        return open_index(data, split, data_format, names[1:], default_split="test")
    index = open_index(data, split, data_format, default_split="test")
    unknown = [name for name in index.class_names[1:] if name not in names[1:]]
    if unknown:
        known = list(dict.fromkeys(names[1:]))
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataError(
            f"class {unknown[0]!r} of the data is not one of the {len(known)} class names of {loaded.info.arch} "
            f"from {loaded.path.name}{hint}",
            path=data,
        )
    return index


def relabel(
    detections: list[Detections], model_names: tuple[str, ...], index_names: tuple[str, ...]
) -> list[Detections]:
    """Detections with the model's labels turned into the data set's (by class name); detections of classes the
    data set does not have (placeholders) are dropped. The identity for a checkpoint trained on the data."""
    if tuple(model_names[1:]) == tuple(index_names[1:]):
        return detections
    position = {name: label for label, name in enumerate(index_names) if label > 0}
    to_index = np.array([position.get(name, -1) for name in model_names], dtype=np.int64)  # [C] model label -> ours
    relabelled = []
    for found in detections:
        labels = to_index[found.labels.astype(np.int64)]  # [K]
        relabelled.append(dataclasses.replace(found, labels=labels, names=()).select(labels > 0))
    return relabelled


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
    force: bool = False,
) -> CheckpointEvaluation:
    """Detections of ``checkpoint`` on ``data``/``split`` (with the model's own settings: score threshold 0.01,
    NMS IoU 0.45, 200 per image for checkpoints and torchvision's ssd300_vgg16, 0.001 / 0.55 / 300 for its
    SSDLite), written as a COCO results JSON (and devkit files for VOC) into a fresh run folder, then evaluated.
    ``split`` None: "test" of a data set root, or the split a COCO file holds. With ``plots``, precision-recall
    curves per class and a confusion summary go there as PNG files; one that exists already stops the run before any
    detection unless ``force``.

    ``model_format`` says what ``checkpoint`` is: "checkpoint", "onnx" (with or without NMS in the graph),
    "torchscript", or "auto" (from the file name). Every form runs through the same data pipeline and
    evaluators, so an export's figures are comparable with its checkpoint's to the last digit the runtimes allow."""
    detector = load_detector(checkpoint, model_format, resolve_device(device))
    info = detector.info
    index = _open_for(detector, data, split, data_format)
    if index.warnings.summary():
        emit(Message(f"{index.split}: {index.warnings.summary()}", "warning"))
    if plots is not None:
        _check_plot_folder(Path(plots), index.class_names[1:], force)
    detections = detect_index_with(
        detector.detect, index, info.layout.image_size, info.mean, info.std, batch_size, emit=emit, resize=info.resize
    )
    detections = relabel(detections, info.class_names, index.class_names)
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


def _check_plot_folder(folder: Path, class_names: Sequence[str], force: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise UsageError("exists and is not a folder", path=folder)
    for path in evaluation_plot_paths(folder, class_names):
        check_new_file(path, force)
