"""``ssd benchmark``: a checkpoint exported to every target whose packages are installed (TorchScript, ONNX, ONNX
INT8, OpenVINO), each form timed on the CPU and evaluated on a data set split the way ``ssd eval --checkpoint``
evaluates (same data pipeline, the model's own detection settings, VOC07 mAP@0.5 and COCO AP), so that what an
export costs in accuracy and gains in speed shows in one table.

Every export goes through ``run_export`` (verified against PyTorch before it is written; INT8 through the
quantisation path and its own check); one that is refused becomes a row saying why instead of stopping the others.
The timings are the detector's whole work on a batch already prepared (network, decoding, NMS), per image: the
median of ``runs`` runs after ``warmup`` runs, on images of the split.
"""

from __future__ import annotations

import importlib.util
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ssdcli.config import BenchmarkConfig, ExportConfig
from ssdcli.data.dataset import open_index
from ssdcli.data.files import write_error
from ssdcli.data.records import DatasetIndex
from ssdcli.engine.evaluate.model import open_for_model, relabel
from ssdcli.engine.evaluate.validation import evaluate_detections
from ssdcli.engine.events import EventHandler, Message, TaskProgress, ignore_events
from ssdcli.engine.export.exporter import run_export
from ssdcli.engine.inference.batched import detect_index_with, prepared_dataset
from ssdcli.engine.inference.detectors import Detector, load_detector
from ssdcli.errors import DataError, SsdcliError

#: The packages each form needs and the extra that installs them.
REQUIRES = {
    "checkpoint": ((), ""),
    "torchscript": ((), ""),
    "onnx": (("onnx", "onnxruntime"), "onnx"),
    "onnx-int8": (("onnx", "onnxruntime"), "onnx"),
    "openvino": (("onnx", "onnxruntime", "openvino"), "openvino"),
}
#: The model format ``load_detector`` reads each form as.
MODEL_FORMAT = {"checkpoint": "checkpoint", "torchscript": "torchscript", "onnx": "onnx", "onnx-int8": "onnx",
                "openvino": "openvino"}  # fmt: skip


@dataclass(frozen=True)
class BenchmarkRow:
    """One form of the model: its size on disk, milliseconds per image at batch 1 and at the larger batch, its
    figures on the split and their difference to the checkpoint's. ``note``: why the figures are missing (a package
    to install, an export refused), else empty."""

    format: str
    size_bytes: int | None = None
    ms_batch1: float | None = None
    ms_batch: float | None = None
    map50: float | None = None
    coco_ap: float | None = None
    map50_change: float | None = None
    coco_ap_change: float | None = None
    note: str = ""


@dataclass(frozen=True)
class BenchmarkResult:
    """The table: one row per form, checkpoint first; ``split`` and ``images``: what was evaluated; ``batch_size``:
    the larger timed batch."""

    rows: tuple[BenchmarkRow, ...]
    split: str
    images: int
    batch_size: int
    device: str = "cpu"

    def as_dict(self) -> dict[str, Any]:
        """The table as JSON-able data."""
        return {
            "split": self.split,
            "images": self.images,
            "batch_size": self.batch_size,
            "device": self.device,
            "rows": [vars(row) for row in self.rows],
        }


def missing_packages(form: str) -> str | None:
    """How to install what ``form`` needs, or None when it is installed."""
    packages, extra = REQUIRES[form]
    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    return f"{', '.join(missing)} not installed: pip install 'ssdcli[{extra}]'" if missing else None


def size_on_disk(path: Path) -> int | None:
    """Bytes of a file, or of every file in a folder (an OpenVINO export); None for torchvision's weights given by
    name (no file)."""
    if not path.exists():
        return None
    if path.is_dir():
        return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())
    return path.stat().st_size


def _calibration_folder(config: BenchmarkConfig, scratch: Path) -> Path:
    """A folder of links to the images of the data set's training split (what ``ssd export --int8`` calibrates
    on); DataError naming the data set when it has no such split."""
    index = open_index(config.data, config.train_split, config.data_format, check_images=False)
    folder = scratch / "calibration"
    try:
        folder.mkdir()
        for number, record in enumerate(index.records):
            (folder / f"{number:06d}{record.path.suffix.lower()}").symlink_to(record.path.resolve())
    except OSError as error:
        raise write_error(error, folder) from None
    return folder


def _export(form: str, config: BenchmarkConfig, scratch: Path) -> Path:
    """The checkpoint as ``form``, written into ``scratch`` by ``run_export`` (verified before it is written)."""
    if form == "checkpoint":
        return Path(config.checkpoint)
    names = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx", "onnx-int8": "model-int8.onnx",
             "openvino": "model_openvino"}  # fmt: skip
    out = scratch / names[form]
    target = "onnx" if form == "onnx-int8" else form
    calibration = _calibration_folder(config, scratch) if form == "onnx-int8" else None
    export = ExportConfig(config.checkpoint, target, out, int8=form == "onnx-int8", calibration=calibration)
    return run_export(export).path


def timing_images(index: DatasetIndex, detector: Detector, count: int) -> Tensor:
    """images [count, 3, S, S] prepared as every command prepares them: the split's first images, repeated if
    fewer."""
    dataset = prepared_dataset(index, detector.spec)
    return torch.stack([dataset[i % len(dataset)][0] for i in range(count)])  # type: ignore[index]


def median_ms_per_image(detector: Detector, images: Tensor, runs: int, warmup: int) -> float:
    """Median wall time of ``detector.detect_batch`` on images [B, 3, S, S] over ``runs`` runs after ``warmup``, in
    milliseconds per image."""
    for _ in range(warmup):
        detector.detect_batch(images)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        detector.detect_batch(images)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times) / images.shape[0]


def _measure(
    form: str, path: Path, config: BenchmarkConfig, index: DatasetIndex, emit: EventHandler
) -> BenchmarkRow:
    detector = load_detector(path, MODEL_FORMAT[form], "cpu")
    images = timing_images(index, detector, config.batch_size)
    emit(TaskProgress(f"{form}: time", 0, 1))
    ms_batch1 = median_ms_per_image(detector, images[:1], config.runs, config.warmup)
    ms_batch = median_ms_per_image(detector, images, config.runs, config.warmup)
    emit(TaskProgress(f"{form}: time", 1, 1))
    spec = detector.spec
    detections = detect_index_with(detector.detect_batch, index, spec, config.eval_batch_size, emit=emit)
    metrics = evaluate_detections(index, relabel(detections, spec.class_names, index.class_names)).training_metrics()
    return BenchmarkRow(form, size_on_disk(path), ms_batch1, ms_batch, metrics["map50"], metrics["coco_ap"])


def run_benchmark(config: BenchmarkConfig, emit: EventHandler = ignore_events) -> BenchmarkResult:
    """Export, time and evaluate the checkpoint in each of ``config.formats`` (see the module's docstring)."""
    reference = load_detector(config.checkpoint, "checkpoint", "cpu")
    index = open_for_model(reference, config.data, config.split, config.data_format)
    if index.warnings.summary():
        emit(Message(f"{index.split}: {index.warnings.summary()}", "warning"))
    if not index.records:
        raise DataError(f"split {index.split!r} has no images to evaluate on", path=config.data)
    rows: list[BenchmarkRow] = []
    forms = ("checkpoint", *(form for form in config.formats if form != "checkpoint"))
    with tempfile.TemporaryDirectory(prefix="ssd-benchmark-") as scratch:
        for done, form in enumerate(forms):
            emit(TaskProgress("benchmark", done, len(forms)))
            rows.append(_row(form, config, index, Path(scratch), emit))
        emit(TaskProgress("benchmark", len(forms), len(forms)))
    return BenchmarkResult(tuple(_with_changes(rows)), index.split, len(index.records), config.batch_size)


def _row(form: str, config: BenchmarkConfig, index: DatasetIndex, scratch: Path, emit: EventHandler) -> BenchmarkRow:
    missing = missing_packages(form)
    if missing is not None:
        return BenchmarkRow(form, note=missing)
    emit(TaskProgress(f"{form}: export", 0, 1))
    try:
        path = _export(form, config, scratch)
    except SsdcliError as error:
        if form == "checkpoint":
            raise
        return BenchmarkRow(form, note=f"export refused: {error.message}")
    emit(TaskProgress(f"{form}: export", 1, 1))
    return _measure(form, path, config, index, emit)


def _with_changes(rows: list[BenchmarkRow]) -> list[BenchmarkRow]:
    """Each measured row with its figures' differences to the checkpoint's (the first row)."""
    first = rows[0]
    changed = []
    for row in rows:
        if row.map50 is None or row.coco_ap is None or first.map50 is None or first.coco_ap is None:
            changed.append(row)
            continue
        changed.append(replace(row, map50_change=row.map50 - first.map50, coco_ap_change=row.coco_ap - first.coco_ap))
    return changed
