"""``ssd eval`` in its three modes (:class:`~ssdcli.config.EvalConfig`), one entry and one result type:

* ``coco``: a COCO results JSON against an instances JSON (pycocotools);
* ``voc``: a results JSON or a folder of devkit files against a VOC split (the devkit's rules);
* ``model``: a checkpoint or an export run over a data set split, its detections written, then both.

Detections of a data set already in memory (training's validation) go to
:func:`~ssdcli.engine.evaluate.validation.evaluate_detections`, which returns the same :class:`EvalOutcome`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ssdcli.config import EvalConfig
from ssdcli.data.files import check_output_folder
from ssdcli.data.results_io import read_results_file
from ssdcli.engine.device import resolve_device
from ssdcli.engine.evaluate.ground_truth import (
    check_coco_result_ids,
    coco_ids_by_name,
    load_coco_ground_truth,
    load_voc_ground_truth,
    voc_class_names,
)
from ssdcli.engine.evaluate.model import check_plot_folder, open_for_model, relabel, write_model_run
from ssdcli.engine.evaluate.outcome import EvalOutcome
from ssdcli.engine.evaluate.results import evaluated_classes, open_voc_results, read_voc_results
from ssdcli.engine.evaluate.validation import evaluate_detections
from ssdcli.engine.events import EventHandler, Message, ignore_events
from ssdcli.engine.inference.batched import detect_index_with
from ssdcli.engine.inference.detectors import load_detector
from ssdcli.engine.inference.options import DetectOptions
from ssdcli.engine.inference.tiled import Tiling, detect_index_tiled
from ssdcli.errors import DataError
from ssdcli.metrics.coco import coco_evaluate
from ssdcli.metrics.voc import voc_evaluate


def run_eval(config: EvalConfig, emit: EventHandler = ignore_events) -> EvalOutcome:
    """Evaluate as ``config`` says; progress of a model's detection goes to ``emit``."""
    if config.mode == "coco":
        return _coco_files(config)
    if config.mode == "voc":
        return _voc_files(config)
    return _model(config, emit)


def _coco_files(config: EvalConfig) -> EvalOutcome:
    """COCO bbox metrics of a results JSON against an instances JSON, both checked (ids included). Results that
    carry their categories are matched to the ground truth's by name; a plain list's ids are the ground truth's."""
    assert config.gt is not None and config.results is not None  # EvalConfig checked it
    gt = load_coco_ground_truth(config.gt)
    file = read_results_file(config.results)
    results = file.records
    if file.categories is not None:
        ids_of = coco_ids_by_name(gt)
        listed = ", ".join(ids_of)
        results = file.by_name(ids_of, f"a category of the ground truth ({listed})", config.results)
    check_coco_result_ids(results, gt, config.results)
    return EvalOutcome(None, coco_evaluate(gt, results, per_class=config.per_class, backend=config.coco_backend))


def _voc_files(config: EvalConfig) -> EvalOutcome:
    """VOC AP of devkit files or a results JSON against the annotations of ``data`` for ``split`` (default: test).

    ``classes`` defaults to the split's classes, or the data set's where the results carry another class or no
    class list (:func:`~ssdcli.engine.evaluate.results.evaluated_classes`)."""
    assert config.data is not None and config.results is not None
    root, split, path = Path(config.data), config.split or "test", Path(config.results)
    ground_truth = load_voc_ground_truth(root, split)
    results = open_voc_results(path, split)
    classes = evaluated_classes(results, root, voc_class_names(ground_truth), config.classes)
    detections, warnings = read_voc_results(results, list(ground_truth), classes, split)
    try:
        voc = voc_evaluate(ground_truth, detections, classes.names, config.iou, config.voc_metric)  # type: ignore[arg-type]
    except DataError as error:
        raise DataError(error.message, path=path) from None
    return EvalOutcome(dataclasses.replace(voc, warnings=warnings), None, warnings)


def _model(config: EvalConfig, emit: EventHandler) -> EvalOutcome:
    """Detections of the model on ``data``/``split`` (with the model's own settings: score threshold 0.01, NMS IoU
    0.45, 200 per image for checkpoints and torchvision's ssd300_vgg16, 0.001 / 0.55 / 300 for its SSDLite),
    evaluated, then written as a COCO results JSON (and devkit files for VOC) into a fresh run folder. ``split``
    None: "test" of a data set root, or the split a COCO file holds. With ``plots``, precision-recall curves per
    class and a confusion summary go there as PNG files; one that exists already stops the run before any
    detection unless ``force``. An ``out`` or ``plots`` that cannot be written stops it before the model is
    loaded.

    Every model form (checkpoint, ONNX with or without NMS in the graph, TorchScript) runs through the same data
    pipeline and evaluators, so an export's figures are comparable with its checkpoint's to the last digit the
    runtimes allow."""
    assert config.model is not None and config.data is not None
    check_output_folder(config.out)
    if config.plots is not None:
        check_output_folder(config.plots)
    detector = load_detector(
        config.model, config.model_format, resolve_device(config.device), DetectOptions(flip=config.flip)
    )
    spec = detector.spec
    index = open_for_model(detector, config.data, config.split, config.data_format)
    if index.warnings.summary():
        emit(Message(f"{index.split}: {index.warnings.summary()}", "warning"))
    plots = Path(config.plots) if config.plots is not None else None
    if plots is not None:
        check_plot_folder(plots, index.class_names[1:], config.force)
    tiling = Tiling(config.tile, config.tile_overlap) if config.tile is not None else None
    if tiling is not None:
        detections = detect_index_tiled(detector, index, tiling, emit)
    else:
        detections = detect_index_with(detector.detect_batch, index, spec, config.batch_size, emit=emit)
    detections = relabel(detections, spec.class_names, index.class_names)
    outcome = evaluate_detections(
        index, detections, metric=config.voc_metric, iou_threshold=config.iou, per_class=config.per_class  # type: ignore[arg-type]
    )
    assert outcome.voc is not None  # evaluate_detections scores VOC AP on every data set
    run = write_model_run(config.out, index, detections, outcome.voc, plots)
    tiled = tiling.record() if tiling is not None else None
    return dataclasses.replace(outcome, model_run=run, tiling=tiled, flip=config.flip)
