"""Sliced inference (``--tile``) for objects small in large photos: an image detected in overlapping windows (each
prepared as a whole image is, by :func:`~ssdcli.engine.inference.preprocess.prepare`) and as a whole, the
detections moved back into the image's pixels and merged by class-wise NMS (SAHI's "standard prediction" plus
slices).

The wrapper is over any per-image detection function, so every model form runs tiled the same way:
:func:`detect_tiled` for one image, :class:`TiledDetector` (a :class:`Detector` whose ``detect`` is tiled) for
``ssd predict``, :func:`detect_index_tiled` for ``ssd eval``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ssdcli.config import check_tiling
from ssdcli.core.detections import Detections
from ssdcli.core.tiling import merge_detections, shift_boxes, tile_windows
from ssdcli.data.collate import checked_batches, collate_detections
from ssdcli.data.dataset import DetectionDataset
from ssdcli.data.records import DatasetIndex
from ssdcli.engine.events import EvalProgress, EventHandler, ignore_events
from ssdcli.engine.inference.detectors import Detector

#: Images [3, H, W] uint8 RGB (of different sizes) -> the detections of each in its own pixels.
DetectImages = Callable[[Sequence[Tensor]], list[Detections]]

#: Windows detected in one batch; a 4000 x 3000 photo cut into 256 px windows has about 250 of them.
WINDOWS_PER_BATCH = 16


@dataclass(frozen=True)
class Tiling:
    """Windows of ``size`` pixels square, neighbours sharing ``overlap`` of a window (see ``core.tiling``)."""

    size: int
    overlap: float = 0.2

    def __post_init__(self) -> None:
        check_tiling(self.size, self.overlap)

    def record(self) -> dict[str, float]:
        """The settings as a run's JSON records them: ``{"size": pixels, "overlap": share}``."""
        return {"size": self.size, "overlap": self.overlap}


def detect_tiled(
    image: Tensor,
    detect: DetectImages,
    tiling: Tiling,
    iou_threshold: float,
    top_k: int,
    batch_size: int = WINDOWS_PER_BATCH,
) -> Detections:
    """The detections of ``image`` [3, H, W] by ``detect`` on the whole image and on each window of ``tiling``
    (``batch_size`` at a time, the whole image in the first batch), in the image's pixels, merged by class-wise NMS
    at ``iou_threshold`` and cut to the ``top_k`` highest scores. An image no larger than a window is detected
    once, as a whole."""
    height, width = int(image.shape[1]), int(image.shape[2])
    if height <= tiling.size and width <= tiling.size:
        return detect([image])[0]
    windows = tile_windows(height, width, tiling.size, tiling.overlap)  # [W, 4] x1, y1, x2, y2
    views = [image, *(image[:, y1:y2, x1:x2] for x1, y1, x2, y2 in windows.tolist())]
    found: list[Detections] = []
    for start in range(0, len(views), batch_size):
        found += detect(views[start : start + batch_size])
    parts = [found[0]]
    for window, seen in zip(windows, found[1:], strict=True):
        boxes = shift_boxes(torch.from_numpy(np.asarray(seen.boxes, dtype=np.float32)).reshape(-1, 4), window)
        parts.append(dataclasses.replace(seen, boxes=boxes.numpy()))
    return _merged(parts, iou_threshold, top_k, (height, width))


def _merged(parts: Sequence[Detections], iou_threshold: float, top_k: int, image_size: tuple[int, int]) -> Detections:
    """The detections of ``parts`` (all in the image's pixels) that :func:`merge_detections` keeps."""
    boxes = np.concatenate([np.asarray(p.boxes, dtype=np.float32).reshape(-1, 4) for p in parts])  # [N, 4]
    scores = np.concatenate([np.asarray(p.scores, dtype=np.float32) for p in parts])  # [N]
    labels = np.concatenate([np.asarray(p.labels, dtype=np.int64) for p in parts])  # [N]
    names = tuple(name for p in parts for name in p.names)
    keep = merge_detections(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), iou_threshold, top_k
    ).numpy()  # [M]
    kept_names = tuple(names[k] for k in keep) if len(names) == len(scores) else ()
    return Detections(
        boxes[keep], scores[keep], labels[keep], image_id=parts[0].image_id, names=kept_names, image_size=image_size
    )


class TiledDetector(Detector):
    """A :class:`Detector` that detects every image with :func:`detect_tiled`: the whole image and each window go
    through the wrapped detector's own detection (``prepare``, its backend and settings, its ``classes``), and the
    merge uses its NMS IoU and top-k. ``detect``, ``predict_rgb`` and calling it are all tiled."""

    def __init__(self, detector: Detector, tiling: Tiling) -> None:
        super().__init__(
            detector.spec, detector.backend, detector.settings, detector.path, detector.format, detector.pretrained,
            detector.classes, detector.flip,
        )  # fmt: skip
        self.tiling = tiling

    def predict_rgb(self, images: Sequence[Tensor]) -> list[Detections]:
        """Detections for a list of [3, H, W] uint8 RGB tensors, each detected window by window, in its pixels."""
        iou, top_k = self.settings.iou_threshold, self.settings.top_k
        return [detect_tiled(image, self._detect_untiled, self.tiling, iou, top_k) for image in images]

    def _detect_untiled(self, images: Sequence[Tensor]) -> list[Detections]:
        """Images or windows [3, h, w] in one batch by the wrapped detector, untiled."""
        return super().predict_rgb(images)


class StoredSample:
    """The transform of a :class:`DetectionDataset` sample that keeps the image as stored ([3, H, W] uint8), for
    windows cut from the file's own pixels."""

    def __call__(self, image: Tensor, target: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        return image.as_subclass(Tensor), target


@torch.no_grad()
def detect_index_tiled(
    detector: Detector, index: DatasetIndex, tiling: Tiling, emit: EventHandler = ignore_events
) -> list[Detections]:
    """Detections for every image of ``index`` (read as evaluation reads it, at its stored size) by a
    :class:`TiledDetector` over ``detector``: with a window no smaller than an image, exactly what
    :func:`~ssdcli.engine.inference.batched.detect_index_with` gives one image per batch. ``image_id`` the
    record's; no class names, as there."""
    tiled = TiledDetector(detector, tiling)
    dataset = DetectionDataset(
        index, detector.spec.layout.image_size, False, transforms=StoredSample(), return_failures=True
    )
    loader = DataLoader(dataset, batch_size=1, collate_fn=collate_detections)
    results: list[Detections] = []
    for batch in checked_batches(loader):
        found = tiled.predict_rgb([batch.images[0]])[0]
        results.append(dataclasses.replace(found, image_id=int(batch.image_ids[0]), names=()))
        emit(EvalProgress(len(results), len(dataset)))
    return results
