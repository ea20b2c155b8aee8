"""Detections of a data set held in memory, evaluated: :func:`evaluate_detections` is the one entry for them
(training's validation, and a model evaluated by ``run_eval``), through the VOC and COCO evaluators. Also the
detections' interchange forms in the data set's own ids, and the validation split's detections during training
(every process its share under DDP)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ssdcli.config import DEFAULT_VOC_IOU, DEFAULT_VOC_METRIC, VocMetric
from ssdcli.core.detections import Detections, DevkitRow
from ssdcli.data.records import DatasetIndex
from ssdcli.engine.evaluate.ground_truth import (
    DIFFICULT,
    coco_ground_truth,
    load_coco_ground_truth,
    voc_ground_truth,
)
from ssdcli.engine.evaluate.outcome import EvalOutcome
from ssdcli.engine.events import EventHandler, ignore_events
from ssdcli.engine.inference.batched import detect_index
from ssdcli.metrics.coco import coco_evaluate
from ssdcli.metrics.voc import voc_evaluate


def evaluate_detections(
    index: DatasetIndex,
    detections: list[Detections],
    *,
    metric: VocMetric = DEFAULT_VOC_METRIC,
    iou_threshold: float = DEFAULT_VOC_IOU,
    per_class: bool = False,
) -> EvalOutcome:
    """VOC AP (``metric`` at ``iou_threshold``) and COCO metrics of ``detections`` (one per image, ``image_id``
    the record's, labels the data set's 1..C-1, pixels) against ``index``.

    VOC: the ground truth of :func:`~ssdcli.engine.evaluate.ground_truth.voc_ground_truth` (a VOC split's
    annotation files as the devkit reads them). COCO: a COCO data set's instances file as written, scored in its
    own ids; other data, its ground truth with difficult objects ignored as the devkit ignores them."""
    ground_truth = voc_ground_truth(index)
    sources = _source_ids(index)
    named = [dataclasses.replace(found, image_id=str(sources[record_id(found)])) for found in detections]
    voc = voc_evaluate(ground_truth, named, index.class_names[1:], iou_threshold, metric)
    if index.format == "coco" and index.annotations_file is not None:
        coco_gt = load_coco_ground_truth(index.annotations_file)
        coco = coco_evaluate(coco_gt, coco_results(index, detections), per_class=per_class)
    else:
        internal = [record for found in detections for record in found.to_coco()]
        coco_gt = coco_ground_truth(index, ground_truth)
        coco = coco_evaluate(coco_gt, internal, per_class=per_class, ignore_key=DIFFICULT)
    return EvalOutcome(voc, coco)


def record_id(found: Detections) -> int:
    """The record id that detection on a data set (:func:`detect_index`) gives ``found``."""
    if not isinstance(found.image_id, int):
        raise TypeError(f"expected detections of a data set record (an int image id), got {found.image_id!r}")
    return found.image_id


def _source_ids(index: DatasetIndex) -> dict[int, int | str]:
    """Record id -> the image's id in the data set's own files."""
    return {record.image_id: record.source_id for record in index.records}


def coco_results(index: DatasetIndex, detections: list[Detections]) -> list[dict[str, Any]]:
    """``detections`` as COCO results records in the data set's own ids: the images' source ids, and the category
    ids of a COCO data set (other data: the labels)."""
    sources = _source_ids(index)
    categories = index.category_ids if index.format == "coco" else None
    return [
        record for found in detections for record in found.to_coco(categories, image_id=sources[record_id(found)])
    ]


def result_categories(index: DatasetIndex) -> dict[int, str]:
    """The class list that :func:`coco_results` refer to: category id (a COCO data set's; other data, the label)
    -> class name, for every class of ``index``."""
    categories = index.category_ids if index.format == "coco" else range(len(index.class_names))
    return {int(categories[label]): name for label, name in enumerate(index.class_names) if label > 0}


def devkit_rows(index: DatasetIndex, detections: list[Detections]) -> list[DevkitRow]:
    """``detections`` as VOC devkit rows: the images' source ids, the data set's class names."""
    sources = _source_ids(index)
    names = index.class_names[1:]
    return [row for found in detections for row in found.to_devkit(names, image_id=str(sources[record_id(found)]))]


def shard(index: DatasetIndex, rank: int, world_size: int) -> DatasetIndex:
    """Every ``world_size``-th record of ``index`` from ``rank`` on (image ids unchanged): one process's share of a
    validation split under DDP."""
    return dataclasses.replace(index, records=index.records[rank::world_size])


def detect_for_validation(
    model: nn.Module,
    index: DatasetIndex,
    anchors: Tensor,
    device: torch.device,
    batch_size: int,
    emit: EventHandler = ignore_events,
    gather: Callable[[list[Detections]], list[list[Detections]]] | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> list[Detections]:
    """Training's validation: the detections of ``model`` on every image of ``index``, for
    :func:`evaluate_detections`.

    Under DDP every process detects on its :func:`shard` and ``gather`` brings the shards' detections together
    (sorted by image id), so that a long validation keeps every process busy (and none waits into the process
    group's timeout)."""
    mine = shard(index, rank, world_size) if world_size > 1 else index
    detections = detect_index(model, mine, anchors, device, batch_size, emit=emit)
    if gather is not None and world_size > 1:
        detections = sorted((d for part in gather(detections) for d in part), key=record_id)
    return detections
