"""A model evaluated on a data set split (``ssd eval --checkpoint``, ``--onnx``, ``--torchscript``): the split opened
for the model's classes, its labels turned into the data set's, and the files its run writes."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ssdcli.core.detections import Detections
from ssdcli.data.dataset import open_index
from ssdcli.data.files import check_new_file, fresh_run_dir, removed_on_interrupt
from ssdcli.data.records import DatasetIndex
from ssdcli.data.results_io import write_coco_results, write_devkit_detections
from ssdcli.engine.evaluate.outcome import ModelRun
from ssdcli.engine.evaluate.plots import evaluation_plot_paths, write_evaluation_plots
from ssdcli.engine.evaluate.validation import coco_results, devkit_rows, result_categories
from ssdcli.engine.inference.detectors import Detector
from ssdcli.errors import DataError, UsageError
from ssdcli.metrics.voc import VocResult


def open_for_model(loaded: Detector, data: str | Path, split: str | None, data_format: str) -> DatasetIndex:
    """The split with the model's classes; for torchvision's detectors (COCO's 91-index label space, 'N/A'
    placeholders) the data's own classes, each of which must be one of the detector's."""
    names = loaded.spec.class_names
    if loaded.pretrained is None:
        return open_index(data, split, data_format, names[1:], default_split="test")
    index = open_index(data, split, data_format, default_split="test")
    unknown = [name for name in index.class_names[1:] if name not in names[1:]]
    if unknown:
        known = list(dict.fromkeys(names[1:]))
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataError(
            f"class {unknown[0]!r} of the data is not one of the {len(known)} class names of {loaded.spec.arch} "
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


def check_plot_folder(folder: Path, class_names: Sequence[str], force: bool) -> None:
    """Stop before any detection if ``folder`` is a file or holds a plot that would be replaced (unless ``force``)."""
    if folder.exists() and not folder.is_dir():
        raise UsageError("exists and is not a folder", path=folder)
    for path in evaluation_plot_paths(folder, class_names):
        check_new_file(path, force)


def write_model_run(
    out: str | Path, index: DatasetIndex, detections: list[Detections], voc: VocResult, plots: Path | None
) -> ModelRun:
    """A fresh run folder under ``out`` with ``detections.json`` (COCO results in the data set's ids, with the
    class list they refer to) and, for a VOC data set, ``devkit/comp4_det_<split>_<class>.txt`` (a file for every
    class of the model, empty where it found none); with ``plots``, precision-recall curves per class and a
    confusion summary there as PNG files."""
    run_dir = fresh_run_dir(out)
    with removed_on_interrupt(run_dir):  # Ctrl-C leaves no half-written run folder
        results_json = write_coco_results(
            run_dir / "detections.json", coco_results(index, detections), result_categories(index)
        )
        devkit_dir = None
        if index.format == "voc":
            devkit_dir = run_dir / "devkit"
            devkit_dir.mkdir()
            write_devkit_detections(devkit_dir, devkit_rows(index, detections), index.class_names[1:], index.split)
    drawn = tuple(write_evaluation_plots(plots, voc, index, detections)) if plots is not None else ()
    return ModelRun(run_dir, results_json, devkit_dir, drawn)
