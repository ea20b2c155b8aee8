"""Running a detector over a data set: each image prepared as every command prepares it, batched, boxes back in the
original image pixels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ssdcli.core.detections import Detections
from ssdcli.core.postprocess import EVAL_SETTINGS, PostprocessSettings
from ssdcli.data.collate import checked_batches, collate_detections
from ssdcli.data.dataset import DetectionDataset
from ssdcli.data.records import DatasetIndex
from ssdcli.engine.events import EvalProgress, EventHandler, ignore_events
from ssdcli.engine.inference.detectors import NetworkBackend, to_pixels
from ssdcli.engine.inference.preprocess import InputSpec, prepare

#: Prepared images [B, 3, S, S] -> per image normalised detections (``boxes`` [K, 4] xyxy, ``scores``, ``labels``).
BatchDetect = Callable[[Tensor], list[dict[str, Tensor]]]


class PreparedSample:
    """The transform of a :class:`DetectionDataset` sample for detection: the image by :func:`prepare`, its boxes
    scaled with it to the S x S input (the dataset's convention; detection does not read them)."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec

    def __call__(self, image: Tensor, target: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        height, width = image.shape[-2:]
        size = self.spec.layout.image_size
        scale = torch.tensor([size / width, size / height, size / width, size / height], dtype=torch.float32)
        boxes = target["boxes"].as_subclass(Tensor) * scale  # [G, 4] xyxy in input pixels
        return prepare(image.as_subclass(Tensor), self.spec), {**target, "boxes": boxes}


def prepared_dataset(index: DatasetIndex, spec: InputSpec, return_failures: bool = False) -> DetectionDataset:
    """The images of ``index`` prepared for ``spec`` (:class:`PreparedSample`); with ``return_failures``, a
    ``LoadFailure`` for an image that cannot be read (see :func:`checked_batches`) instead of a DataError."""
    transform = PreparedSample(spec)
    return DetectionDataset(index, spec.layout.image_size, False, transforms=transform, return_failures=return_failures)


@torch.no_grad()
def detect_index_with(
    detect: BatchDetect,
    index: DatasetIndex,
    spec: InputSpec,
    batch_size: int = 16,
    workers: int = 0,
    emit: EventHandler = ignore_events,
) -> list[Detections]:
    """Detections for every image of ``index``, each prepared by :func:`prepare` for ``spec``.

    ``detect`` is a detector's :meth:`~ssdcli.engine.inference.detectors.Detector.detect_batch` (any model form) or
    a model in memory (:func:`detect_index`): each is evaluated on exactly the inputs ``ssd predict`` gives it.
    """
    dataset = prepared_dataset(index, spec, return_failures=True)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_detections)
    results: list[Detections] = []
    for batch in checked_batches(loader):
        detections = detect(batch.images)
        sizes = batch.orig_sizes.tolist()  # [B] of (h, w)
        for image_id, (height, width), found in zip(batch.image_ids.tolist(), sizes, detections, strict=True):
            boxes, scores, labels = to_pixels(found, height, width)
            results.append(Detections(boxes, scores, labels, image_id=int(image_id), image_size=(height, width)))
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
    settings: PostprocessSettings = EVAL_SETTINGS,
    emit: EventHandler = ignore_events,
) -> list[Detections]:
    """:func:`detect_index_with` for a model in memory ([B, 3, S, S] -> conf, loc; its ``config`` the input
    spec) with default boxes ``anchors`` [A, 4] on ``device``, run in eval mode."""
    backend = NetworkBackend(model, anchors, device)

    def detect(images: Tensor) -> list[dict[str, Tensor]]:
        return backend(images, settings)

    was_training = model.training
    model.eval()
    try:
        return detect_index_with(detect, index, cast(InputSpec, model.config), batch_size, workers, emit)
    finally:
        model.train(was_training)
