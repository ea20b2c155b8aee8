"""A predictor object for notebooks and the ``ssd predict`` command: images in, detections in pixels out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ssdcli.core.anchors import default_boxes
from ssdcli.core.detections import Detections
from ssdcli.core.layouts import AnchorLayout
from ssdcli.core.postprocess import EVAL_SETTINGS, PostprocessSettings, postprocess
from ssdcli.engine.inference.preprocess import ImageLike, network_input, to_rgb_tensor
from ssdcli.errors import UsageError
from ssdcli.models.spec import ModelSpec

#: A network: images [B, 3, S, S] normalised -> (conf [B, A, C], loc [B, A, 4]).
RawNetwork = Callable[[Tensor], tuple[Tensor, Tensor]]


def to_pixels(detections: dict[str, Tensor], height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised xyxy detections of one image -> (boxes [K, 4] pixels, scores [K], labels [K]) as numpy."""
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    boxes = detections["boxes"].float().cpu() * scale
    return boxes.numpy(), detections["scores"].float().cpu().numpy(), detections["labels"].cpu().numpy()


#: What turns a batch of network inputs [B, 3, S, S] into detections per image (``boxes`` [K, 4] xyxy normalised,
#: ``scores`` [K], ``labels`` [K]) under the given settings.
Backend = Callable[[Tensor, PostprocessSettings], list[dict[str, Tensor]]]


class NetworkBackend:
    """A network with raw outputs (PyTorch, TorchScript, an ONNX file without NMS), decoded and suppressed by
    ssdcli (DESIGN.md 1.5) on ``device``."""

    def __init__(self, network: RawNetwork, layout: AnchorLayout, device: torch.device | str = "cpu") -> None:
        self.network = network
        self.device = torch.device(device)
        self.anchors = default_boxes(layout, device=self.device)  # [A, 4]

    def __call__(self, batch: Tensor, settings: PostprocessSettings) -> list[dict[str, Tensor]]:
        conf, loc = self.network(batch.to(self.device))  # [B, A, C], [B, A, 4]
        return postprocess(
            conf, loc, self.anchors, settings.score_threshold, settings.iou_threshold, settings.top_k,
            settings.pre_nms_top_k,
        )  # fmt: skip


class Predictor:
    """Runs a model on images of any size and returns :class:`Detections` per image: the images are prepared as
    evaluation prepares them, ``backend`` detects, and the boxes go back to each image's pixels.

    ``predictor(images)`` accepts one image or a list: paths, numpy BGR arrays (as OpenCV gives) or RGB tensors.
    The thresholds are attributes and may be changed between calls.
    """

    def __init__(
        self,
        backend: Backend,
        spec: ModelSpec,
        conf_threshold: float = 0.25,
        iou_threshold: float = EVAL_SETTINGS.iou_threshold,
        top_k: int = EVAL_SETTINGS.top_k,
        classes: Sequence[str] | None = None,
        pre_nms_top_k: int = EVAL_SETTINGS.pre_nms_top_k,
    ) -> None:
        self.backend = backend
        self.spec = spec
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.top_k = top_k
        self.pre_nms_top_k = pre_nms_top_k
        self.keep_labels = None if classes is None else self._label_ids(classes)

    def _label_ids(self, classes: Sequence[str]) -> set[int]:
        known = {name: i for i, name in enumerate(self.spec.class_names) if i > 0}
        unknown = [c for c in classes if c not in known]
        if unknown:
            raise UsageError(f"classes: unknown class(es) {unknown}; the model knows {list(known)}")
        return {known[c] for c in classes}

    @property
    def settings(self) -> PostprocessSettings:
        return PostprocessSettings(self.conf_threshold, self.iou_threshold, self.top_k, self.pre_nms_top_k)

    @torch.no_grad()
    def predict_rgb(self, images: Sequence[Tensor]) -> list[Detections]:
        """Detections for a batch of [3, H, W] uint8 RGB tensors."""
        if not images:
            return []
        size, spec = self.spec.layout.image_size, self.spec
        batch = torch.stack([network_input(image, size, spec.mean, spec.std, spec.resize) for image in images])
        results = []
        for image, detections in zip(images, self.backend(batch, self.settings)):
            height, width = int(image.shape[1]), int(image.shape[2])
            boxes, scores, labels = to_pixels(detections, height, width)
            if self.keep_labels is not None:
                mask = np.isin(labels, list(self.keep_labels))
                boxes, scores, labels = boxes[mask], scores[mask], labels[mask]
            names = tuple(self.spec.class_names[int(label)] for label in labels)
            results.append(Detections(boxes, scores, labels, names=names, image_size=(height, width)))
        return results

    def __call__(self, images: ImageLike | Sequence[ImageLike], batch_size: int = 16) -> list[Detections]:
        items = [images] if isinstance(images, (str, Path, np.ndarray, Tensor)) else list(images)
        results: list[Detections] = []
        for start in range(0, len(items), batch_size):
            chunk = [to_rgb_tensor(item) for item in items[start : start + batch_size]]
            results.extend(self.predict_rgb(chunk))
        return results


def model_settings(settings: PostprocessSettings, options: dict[str, object]) -> dict[str, Any]:
    """Predictor options: ``options`` where given (not None), else the model's NMS IoU, top-k and pre-NMS top-k
    (the score threshold stays the predictor's own: a display threshold, not the model's evaluation one)."""
    given = {key: value for key, value in options.items() if value is not None}
    defaults = {
        "iou_threshold": settings.iou_threshold,
        "top_k": settings.top_k,
        "pre_nms_top_k": settings.pre_nms_top_k,
    }
    return {**defaults, **given}
