"""Running a model over a data set: batched forward, decoding and NMS, boxes back in original image pixels."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ssdcli.config import DEFAULT_RESIZE
from ssdcli.core.detections import Detections
from ssdcli.core.postprocess import EVAL_SETTINGS, postprocess
from ssdcli.data.collate import checked_batches, collate_detections
from ssdcli.data.dataset import DetectionDataset
from ssdcli.data.records import DatasetIndex
from ssdcli.engine.events import EvalProgress, EventHandler, ignore_events
from ssdcli.engine.inference.predictor import to_pixels
from ssdcli.models.spec import ModelConfig


@torch.no_grad()
def detect_index_with(
    detect: Callable[[Tensor], list[dict[str, Tensor]]],
    index: DatasetIndex,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 16,
    workers: int = 0,
    emit: EventHandler = ignore_events,
    resize: str = DEFAULT_RESIZE,
) -> list[Detections]:
    """Detections for every image of ``index`` (evaluation transforms: resize to ``image_size`` the model's way,
    see ``ModelConfig.resize``, and normalise).

    ``detect`` maps images [B, 3, S, S] to per-image normalised detections (see ``engine.detectors``), so a
    checkpoint, an ONNX file and a TorchScript file are evaluated on exactly the same inputs.
    """
    dataset = DetectionDataset(index, image_size, False, mean, std, return_failures=True, resize=resize)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_detections)
    results: list[Detections] = []
    for batch in checked_batches(loader):
        detections = detect(batch.images)
        for image_id, (height, width), found in zip(batch.image_ids.tolist(), batch.orig_sizes.tolist(), detections):
            boxes, scores, labels = to_pixels(found, int(height), int(width))
            results.append(Detections(boxes, scores, labels, image_id=int(image_id), image_size=(int(height), int(width))))
        emit(EvalProgress(len(results), len(dataset)))
    return results


@torch.no_grad()
def detect_index(
    model: nn.Module,
    index: DatasetIndex,
    anchors: Tensor,
    device: torch.device,
    batch_size: int = 16,
    workers: int = 0,
    score_threshold: float = EVAL_SETTINGS.score_threshold,
    iou_threshold: float = EVAL_SETTINGS.iou_threshold,
    top_k: int = EVAL_SETTINGS.top_k,
    emit: EventHandler = ignore_events,
    pre_nms_top_k: int = EVAL_SETTINGS.pre_nms_top_k,
) -> list[Detections]:
    """:func:`detect_index_with` for a model in memory ([B, 3, S, S] -> conf, loc), run in eval mode."""
    config: ModelConfig = model.config  # type: ignore[assignment]  # an SSD's; nn.Module hides it

    def detect(images: Tensor) -> list[dict[str, Tensor]]:
        images = images.to(device, non_blocking=True)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        conf, loc = model(images)
        return postprocess(conf, loc, anchors, score_threshold, iou_threshold, top_k, pre_nms_top_k)

    was_training = model.training
    model.eval()
    try:
        return detect_index_with(
            detect, index, config.layout.image_size, config.mean, config.std, batch_size, workers, emit, config.resize
        )
    finally:
        model.train(was_training)
