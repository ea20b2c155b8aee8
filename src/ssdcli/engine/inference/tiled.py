"""Sliced inference (``--tile``) for objects small in large photos: an image detected in overlapping windows (each
resized to the network's input as a whole image is) and as a whole, the detections moved back into the image's
pixels and merged by class-wise NMS (SAHI's "standard prediction" plus slices).

The wrapper is over any per-image detection function, so every model form runs tiled the same way:
:func:`detect_tiled` for one image, :class:`TiledPredictor` for ``ssd predict``, :func:`detect_index_tiled` for
``ssd eval``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torchvision import tv_tensors

from ssdcli.core.detections import Detections
from ssdcli.core.tiling import merge_detections, shift_boxes, tile_windows
from ssdcli.data.dataset import read_sized_image
from ssdcli.data.records import DatasetIndex
from ssdcli.data.transforms import build_transforms
from ssdcli.engine.events import EvalProgress, EventHandler, ignore_events
from ssdcli.engine.inference.detectors import LoadedDetector
from ssdcli.engine.inference.predictor import Predictor, to_pixels

#: One image [3, H, W] uint8 RGB -> its detections in its own pixels.
DetectImage = Callable[[Tensor], Detections]


@dataclass(frozen=True)
class Tiling:
    """Windows of ``size`` pixels square, neighbours sharing ``overlap`` of a window (see ``core.tiling``)."""

    size: int
    overlap: float = 0.2

    def record(self) -> dict[str, float]:
        """The settings as a run's JSON records them: ``{"size": pixels, "overlap": share}``."""
        return {"size": self.size, "overlap": self.overlap}


def detect_tiled(image: Tensor, detect: DetectImage, tiling: Tiling, iou_threshold: float, top_k: int) -> Detections:
    """The detections of ``image`` [3, H, W] by ``detect`` on the whole image and on each window of ``tiling``,
    in the image's pixels, merged by class-wise NMS at ``iou_threshold`` and cut to the ``top_k`` highest scores.
    An image no larger than a window is detected once, as a whole."""
    height, width = int(image.shape[1]), int(image.shape[2])
    whole = detect(image)
    if height <= tiling.size and width <= tiling.size:
        return whole
    parts = [whole]
    for window in tile_windows(height, width, tiling.size, tiling.overlap):
        x1, y1, x2, y2 = window.tolist()
        found = detect(image[:, y1:y2, x1:x2])
        boxes = shift_boxes(torch.from_numpy(np.asarray(found.boxes, dtype=np.float32)).reshape(-1, 4), window)
        parts.append(dataclasses.replace(found, boxes=boxes.numpy()))
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


class TiledPredictor(Predictor):
    """A :class:`Predictor` that detects every image with :func:`detect_tiled`: each window goes through the
    predictor as an image of its own, and the merge uses the predictor's NMS IoU and top-k."""

    def __init__(self, predictor: Predictor, tiling: Tiling) -> None:
        super().__init__(
            predictor.backend, predictor.spec, predictor.conf_threshold, predictor.iou_threshold, predictor.top_k,
            pre_nms_top_k=predictor.pre_nms_top_k,
        )  # fmt: skip
        self.keep_labels = predictor.keep_labels
        self.tiling = tiling

    @torch.no_grad()
    def predict_rgb(self, images: Sequence[Tensor]) -> list[Detections]:
        """Detections for a list of [3, H, W] uint8 RGB tensors, each detected window by window."""
        return [detect_tiled(image, self._detect_one, self.tiling, self.iou_threshold, self.top_k) for image in images]

    def _detect_one(self, image: Tensor) -> Detections:
        return super().predict_rgb([image])[0]


def image_detector(detector: LoadedDetector) -> DetectImage:
    """A per-image detection function over a loaded model: the image [3, H, W] uint8 RGB prepared exactly as
    evaluation prepares a data set's image (``data.transforms.build_transforms``: resized to the model's input,
    normalised), detected with the model's own settings, the boxes in the image's pixels."""
    spec = detector.spec
    transform = build_transforms(spec.layout.image_size, False, spec.mean, spec.std, resize=spec.resize)

    def detect(image: Tensor) -> Detections:
        batch = transform(tv_tensors.Image(image))[None]  # [1, 3, S, S]
        height, width = int(image.shape[1]), int(image.shape[2])
        boxes, scores, labels = to_pixels(detector.detect(batch)[0], height, width)
        return Detections(boxes, scores, labels, image_size=(height, width))

    return detect


@torch.no_grad()
def detect_index_tiled(
    detector: LoadedDetector, index: DatasetIndex, tiling: Tiling, emit: EventHandler = ignore_events
) -> list[Detections]:
    """Detections for every image of ``index`` (at its stored size) by :func:`detect_tiled` over ``detector``,
    merged at the model's NMS IoU and top-k; ``image_id`` the record's, as
    :func:`~ssdcli.engine.inference.batched.detect_index_with` gives them."""
    detect = image_detector(detector)
    settings = detector.spec.postprocess
    results: list[Detections] = []
    for record in index.records:
        pixels = read_sized_image(record.path, record.width, record.height)  # [H, W, 3]
        image = torch.from_numpy(pixels).permute(2, 0, 1)  # [3, H, W], laid out as the data set's images are
        found = detect_tiled(image, detect, tiling, settings.iou_threshold, settings.top_k)
        results.append(dataclasses.replace(found, image_id=record.image_id))
        emit(EvalProgress(len(results), len(index.records)))
    return results
