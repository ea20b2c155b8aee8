"""Running a model over a data set: batched forward, decoding and NMS, boxes back in original image pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ssdcli.core.postprocess import postprocess
from ssdcli.data.collate import collate_detections
from ssdcli.data.dataset import DetectionDataset
from ssdcli.data.records import DatasetIndex

from .events import EvalProgress, EventHandler, ignore_events
from .predictor import to_pixels


@dataclass(frozen=True)
class ImageDetections:
    """Detections of one image: boxes [K, 4] xyxy in original pixels (0-based continuous), scores [K], labels [K]
    in the model's contiguous 1..C-1."""

    image_id: int
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


@torch.no_grad()
def detect_index(
    model: nn.Module,
    index: DatasetIndex,
    anchors: Tensor,
    device: torch.device,
    batch_size: int = 16,
    workers: int = 0,
    score_threshold: float = 0.01,
    iou_threshold: float = 0.45,
    top_k: int = 200,
    emit: EventHandler = ignore_events,
    pre_nms_top_k: int = 400,
) -> list[ImageDetections]:
    """Detections for every image of ``index`` (evaluation transforms: resize and normalise only)."""
    config = model.config
    dataset = DetectionDataset(index, config.layout.image_size, False, config.mean, config.std, resize=config.resize)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_detections)
    was_training = model.training
    model.eval()
    results: list[ImageDetections] = []
    try:
        for batch in loader:
            images = batch.images.to(device, non_blocking=True)
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            conf, loc = model(images)
            detections = postprocess(conf, loc, anchors, score_threshold, iou_threshold, top_k, pre_nms_top_k)
            for image_id, (height, width), found in zip(batch.image_ids.tolist(), batch.orig_sizes.tolist(), detections):
                results.append(ImageDetections(int(image_id), *to_pixels(found, int(height), int(width))))
            emit(EvalProgress(len(results), len(dataset)))
    finally:
        model.train(was_training)
    return results
