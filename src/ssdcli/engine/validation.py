"""Validation metrics of a model on a data set: VOC07 mAP@0.5 and COCO AP, through the project's evaluators."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ssdcli.data.records import DatasetIndex
from ssdcli.metrics.coco import CocoResult, coco_evaluate
from ssdcli.metrics.voc import Detection, VocImageGT, VocResult, voc_evaluate

from .events import EventHandler, ignore_events
from .inference import ImageDetections, detect_index


def coco_ground_truth(index: DatasetIndex) -> dict[str, Any]:
    """The index as a COCO ground-truth dict with contiguous category ids 1..C-1 (crowd = ignored objects)."""
    images, annotations = [], []
    for record in index.records:
        images.append({"id": record.image_id, "width": record.width, "height": record.height})
        for box, label, ignore in zip(record.boxes.tolist(), record.labels.tolist(), record.ignore.tolist()):
            x1, y1, x2, y2 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": record.image_id,
                    "category_id": int(label),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(ignore),
                }
            )
    categories = [{"id": i, "name": name} for i, name in enumerate(index.class_names) if i > 0]
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
    detections: list[ImageDetections],
    metric: str = "voc07",
    iou_threshold: float = 0.5,
    per_class: bool = False,
) -> DetectionEvaluation:
    """Evaluate ``detections`` (model labels, pixels) against ``index`` with the VOC and COCO evaluators."""
    names = index.class_names
    records = {r.image_id: r for r in index.records}
    ground_truth = {
        str(r.source_id): VocImageGT(r.boxes, tuple(names[int(l)] for l in r.labels), r.ignore) for r in index.records
    }
    voc_detections: list[Detection] = []
    internal: list[dict[str, Any]] = []
    exported: list[dict[str, Any]] = []
    for found in detections:
        source_id = records[found.image_id].source_id
        for box, score, label in zip(found.boxes.tolist(), found.scores.tolist(), found.labels.tolist()):
            voc_detections.append(Detection(str(source_id), names[int(label)], float(score), tuple(box)))
            x1, y1, x2, y2 = box
            xywh = [x1, y1, x2 - x1, y2 - y1]
            internal.append({"image_id": found.image_id, "category_id": int(label), "bbox": xywh, "score": score})
            category = index.category_ids[int(label)] if index.format == "coco" else int(label)
            exported.append({"image_id": source_id, "category_id": int(category), "bbox": xywh, "score": score})
    voc = voc_evaluate(ground_truth, voc_detections, names[1:], iou_threshold, metric)  # type: ignore[arg-type]
    coco = coco_evaluate(coco_ground_truth(index), internal, per_class=per_class)
    return DetectionEvaluation(voc, coco, voc_detections, exported)


def detection_metrics(index: DatasetIndex, detections: list[ImageDetections]) -> dict[str, float]:
    """``map50`` (VOC07 11-point, difficult ignored) and ``coco_ap`` (AP@[.5:.95]) of ``detections``."""
    evaluation = evaluate_detections(index, detections)
    return {"map50": float(evaluation.voc.mean_ap), "coco_ap": float(evaluation.coco.metrics.ap)}


def evaluate_model(
    model: nn.Module,
    index: DatasetIndex,
    anchors: Tensor,
    device: torch.device,
    batch_size: int,
    emit: EventHandler = ignore_events,
) -> dict[str, float]:
    detections = detect_index(model, index, anchors, device, batch_size, emit=emit)
    return detection_metrics(index, detections)
