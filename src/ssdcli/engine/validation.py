"""Validation metrics of a model on a data set: VOC07 mAP@0.5 and COCO AP, through the project's evaluators."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ssdcli.data.records import DatasetIndex
from ssdcli.metrics.coco import coco_evaluate
from ssdcli.metrics.voc import Detection, VocImageGT, voc_evaluate

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


def detection_metrics(index: DatasetIndex, detections: list[ImageDetections]) -> dict[str, float]:
    """``map50`` (VOC07 11-point, difficult ignored) and ``coco_ap`` (AP@[.5:.95]) of ``detections``."""
    names = index.class_names
    ground_truth = {
        str(r.image_id): VocImageGT(r.boxes, tuple(names[int(l)] for l in r.labels), r.ignore) for r in index.records
    }
    voc_detections, results = [], []
    for found in detections:
        for box, score, label in zip(found.boxes.tolist(), found.scores.tolist(), found.labels.tolist()):
            voc_detections.append(Detection(str(found.image_id), names[int(label)], float(score), tuple(box)))
            x1, y1, x2, y2 = box
            results.append(
                {"image_id": found.image_id, "category_id": int(label), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
            )
    voc = voc_evaluate(ground_truth, voc_detections, names[1:], 0.5, "voc07")
    coco = coco_evaluate(coco_ground_truth(index), results)
    return {"map50": float(voc.mean_ap), "coco_ap": float(coco.metrics.ap)}


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
