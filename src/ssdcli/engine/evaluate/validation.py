"""Validation metrics of a model on a data set: VOC07 mAP@0.5 and COCO AP, through the project's evaluators."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ssdcli.data.records import DatasetIndex
from ssdcli.metrics.coco import CocoResult, coco_evaluate
from ssdcli.metrics.voc import Detection, VocImageGT, VocResult, voc_evaluate

from ssdcli.engine.evaluate.results import load_coco_ground_truth, load_voc_ground_truth
from ssdcli.engine.events import EventHandler, ignore_events
from ssdcli.data.detections import Detections
from ssdcli.engine.inference.batched import detect_index

DIFFICULT = "difficult"  # the flag of VOC's difficult objects in the COCO ground truth built here


def voc_ground_truth(index: DatasetIndex) -> dict[str, VocImageGT]:
    """Ground truth for the VOC metric, image id string -> :class:`VocImageGT`.

    VOC data: the split's annotation files as the devkit reads them (every object as written, difficult ones
    flagged; boxes neither clipped nor dropped), so that the numbers equal ``ssd eval --voc`` on the same
    detections. COCO data (no devkit): the index's records, crowd objects as difficult ones.
    """
    if index.format == "voc":
        return load_voc_ground_truth(index.root, index.split)
    names = index.class_names
    return {
        str(r.source_id): VocImageGT(r.boxes, tuple(names[int(l)] for l in r.labels), r.ignore) for r in index.records
    }


def coco_ground_truth(index: DatasetIndex, ground_truth: Mapping[str, VocImageGT]) -> dict[str, Any]:
    """The ground truth of :func:`voc_ground_truth` as a COCO dict, for data without an instances file (VOC):
    image ids are the records' ``image_id``, category ids the labels 1..C-1; difficult objects are flagged
    ``"difficult"`` (not ``iscrowd``, whose IoU differs) for ``coco_evaluate(ignore_key=DIFFICULT)``, which
    ignores them as the devkit does."""
    label_of = {name: label for label, name in enumerate(index.class_names) if label > 0}
    images, annotations = [], []
    for record in index.records:
        images.append({"id": record.image_id, "width": record.width, "height": record.height})
        found = ground_truth[str(record.source_id)]
        for box, name, difficult in zip(found.boxes_xyxy.tolist(), found.class_names, found.difficult.tolist()):
            if name not in label_of:
                continue  # a class the model does not know: not evaluated, as in the VOC metric
            x1, y1, x2, y2 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": record.image_id,
                    "category_id": label_of[name],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                    DIFFICULT: int(difficult),
                }
            )
    categories = [{"id": label, "name": name} for name, label in label_of.items()]
    return {"images": images, "annotations": annotations, "categories": categories}


@dataclass(frozen=True)
class DetectionEvaluation:
    """VOC and COCO results of a model's detections on a data set, plus the detections in both interchange forms:
    ``voc_detections`` (image id strings, class names) and ``coco_results`` (the data set's own image and
    category ids, xywh pixels)."""

    voc: VocResult
    coco: CocoResult
    voc_detections: list[Detection]
    coco_results: list[dict[str, Any]]


def evaluate_detections(
    index: DatasetIndex,
    detections: list[Detections],
    metric: str = "voc07",
    iou_threshold: float = 0.5,
    per_class: bool = False,
) -> DetectionEvaluation:
    """Evaluate ``detections`` (model labels, pixels) against ``index`` with the VOC and COCO evaluators."""
    names = index.class_names
    records = {r.image_id: r for r in index.records}
    voc_detections: list[Detection] = []
    internal: list[dict[str, Any]] = []
    exported: list[dict[str, Any]] = []
    categories = index.category_ids if index.format == "coco" else None  # VOC: the label itself
    for found in detections:
        source_id = records[found.image_id].source_id
        for box, score, label in zip(found.boxes.tolist(), found.scores.tolist(), found.labels.tolist()):
            voc_detections.append(Detection(str(source_id), names[int(label)], float(score), tuple(box)))
        internal.extend(found.to_coco())
        exported.extend(found.to_coco(categories, image_id=source_id))
    ground_truth = voc_ground_truth(index)
    voc = voc_evaluate(ground_truth, voc_detections, names[1:], iou_threshold, metric)  # type: ignore[arg-type]
    if index.format == "coco" and index.annotations_file is not None:
        # The instances file as written (COCO's own areas, crowd regions, every image), scored in its own ids.
        coco = coco_evaluate(load_coco_ground_truth(index.annotations_file), exported, per_class=per_class)
    else:
        gt = coco_ground_truth(index, ground_truth)
        coco = coco_evaluate(gt, internal, per_class=per_class, ignore_key=DIFFICULT)
    return DetectionEvaluation(voc, coco, voc_detections, exported)


def detection_metrics(index: DatasetIndex, detections: list[Detections]) -> dict[str, float]:
    """``map50`` (VOC07 11-point, difficult ignored) and ``coco_ap`` (AP@[.5:.95]) of ``detections``."""
    evaluation = evaluate_detections(index, detections)
    return {"map50": float(evaluation.voc.mean_ap), "coco_ap": float(evaluation.coco.metrics.ap)}


def shard(index: DatasetIndex, rank: int, world_size: int) -> DatasetIndex:
    """Every ``world_size``-th record of ``index`` from ``rank`` on (image ids unchanged): one process's share of a
    validation split under DDP."""
    return dataclasses.replace(index, records=index.records[rank::world_size])


def evaluate_model(
    model: nn.Module,
    index: DatasetIndex,
    anchors: Tensor,
    device: torch.device,
    batch_size: int,
    emit: EventHandler = ignore_events,
    gather: Callable[[list[Detections]], list[list[Detections]]] | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[dict[str, float], list[Detections]]:
    """Training's validation: the metrics of :func:`detection_metrics`, and the detections they come from.

    Under DDP every process detects on its :func:`shard` and ``gather`` brings the shards' detections together,
    so that a long validation keeps every process busy (and none waits into the process group's timeout)."""
    mine = shard(index, rank, world_size) if world_size > 1 else index
    detections = detect_index(model, mine, anchors, device, batch_size, emit=emit)
    if gather is not None and world_size > 1:
        detections = sorted((d for part in gather(detections) for d in part), key=lambda d: d.image_id)
    return detection_metrics(index, detections), detections
