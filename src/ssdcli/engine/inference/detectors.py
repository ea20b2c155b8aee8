"""A trained model in any of its forms (checkpoint or torchvision's detector, TorchScript file, ONNX file with or
without NMS in its graph, OpenVINO export) as one :class:`Detector`: images in, detections in pixels out.

``ssd eval``, ``ssd predict``, ``ssd benchmark`` and ``ssdcli.load`` all load through :func:`load_detector`, and
every form is fed by :func:`~ssdcli.engine.inference.preprocess.prepare`: what differs between the forms is the
backend alone (the network's raw outputs decoded by ssdcli, or a graph that decodes and suppresses itself), so an
export evaluated or run is compared with its checkpoint on exactly the same inputs.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from ssdcli.config import MODEL_FORMATS
from ssdcli.core.anchors import default_boxes
from ssdcli.core.detections import Detections
from ssdcli.core.layouts import AnchorLayout
from ssdcli.core.postprocess import PostprocessSettings, postprocess
from ssdcli.engine.inference.loading import load_model
from ssdcli.engine.inference.options import DetectOptions
from ssdcli.engine.inference.preprocess import ImageLike, prepare, to_rgb_tensor
from ssdcli.errors import CheckpointError, UsageError
from ssdcli.models.spec import ModelSpec

#: A network: images [B, 3, S, S] normalised -> (conf [B, A, C], loc [B, A, 4]).
RawNetwork = Callable[[Tensor], tuple[Tensor, Tensor]]


class Backend(Protocol):
    """What turns a batch of prepared images [B, 3, S, S] into detections per image (``boxes`` [K, 4] xyxy
    normalised, ``scores`` [K], ``labels`` [K]) under the given settings."""

    @property
    def device(self) -> torch.device: ...

    def __call__(self, batch: Tensor, settings: PostprocessSettings, flip: bool = False) -> list[dict[str, Tensor]]:
        """``flip``: detect each image and its mirror image together (see :class:`DetectOptions`)."""
        ...

    def check(self, settings: PostprocessSettings, options: DetectOptions, path: Path) -> None:
        """UsageError for settings this backend cannot honour."""
        ...


class NetworkBackend:
    """A network with raw outputs (a PyTorch model, a TorchScript module, an ONNX file without NMS, an OpenVINO
    export), decoded and suppressed by ssdcli (DESIGN.md 1.5) on ``device``."""

    def __init__(self, network: RawNetwork, anchors: Tensor, device: torch.device | str = "cpu") -> None:
        self.network = network
        self.device = torch.device(device)
        self.anchors = anchors.to(self.device)  # [A, 4] cxcywh

    @classmethod
    def of(cls, network: RawNetwork, layout: AnchorLayout, device: torch.device | str = "cpu") -> NetworkBackend:
        """The backend of ``network`` with the default boxes of ``layout``."""
        return cls(network, default_boxes(layout, device=torch.device(device)), device)

    def __call__(self, batch: Tensor, settings: PostprocessSettings, flip: bool = False) -> list[dict[str, Tensor]]:
        batch = batch.to(self.device, non_blocking=True)
        if flip:  # the mirror images in the same forward pass: [2B, 3, S, S]
            batch = torch.cat([batch, batch.flip(-1)])
        if self.device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
        conf, loc = self.network(batch)  # [B, A, C], [B, A, 4] ([2B, ...] with flip)
        conf, loc = conf.to(self.device), loc.to(self.device)
        if not flip:
            return postprocess(conf, loc, self.anchors, settings)
        if self.mirror is None:  # default boxes without a mirror partner each: both views' candidates to NMS
            return postprocess(*merge_mirrored(conf, loc, self.anchors), settings)
        return postprocess(*average_mirrored(conf, loc, self.mirror), self.anchors, settings)

    @cached_property
    def mirror(self) -> Tensor | None:
        """Each default box's mirror partner [A] (:func:`mirror_partners`), found at the first flipped batch."""
        return mirror_partners(self.anchors)

    def check(self, settings: PostprocessSettings, options: DetectOptions, path: Path) -> None:
        """Any settings: the decoding and NMS are ssdcli's."""


def mirror_partners(anchors: Tensor, tolerance: float = 1e-4, chunk: int = 512) -> Tensor | None:
    """For each default box (anchors [A, 4] cxcywh), the index of the default box that is its mirror image (centre
    x -> 1 - x, the rest equal): [A] int64, an involution. None when some box has no partner within
    ``tolerance`` in every coordinate (a layout that is not left-right symmetric)."""
    mirrored = anchors.float().clone()
    mirrored[:, 0] = 1.0 - mirrored[:, 0]
    partners, gaps = [], []
    for start in range(0, len(anchors), chunk):  # [chunk, A] distances at a time
        gap, partner = torch.cdist(mirrored[start : start + chunk], anchors.float(), p=float("inf")).min(dim=1)
        partners.append(partner)
        gaps.append(gap)
    if not partners or torch.cat(gaps).max() > tolerance:
        return None
    return torch.cat(partners)


def average_mirrored(conf: Tensor, loc: Tensor, partners: Tensor) -> tuple[Tensor, Tensor]:
    """The outputs of B images followed by their mirror images (conf [2B, A, C] logits, loc [2B, A, 4]) as one
    prediction per default box of the B images: conf [B, A, C] (logits whose softmax is the mean of both views'
    class probabilities) and loc [B, A, 4] (the mean of both views' offsets). The mirror image's prediction for the
    default box ``partners[i]`` is, in the original frame, a prediction for box ``i`` with its x offset negated;
    averaging before decoding gives one box per default box, so NMS sees no near-duplicate pairs from the two views.
    """
    images = conf.shape[0] // 2
    probabilities = torch.softmax(conf.float(), dim=-1)  # [2B, A, C]
    mean_probabilities = (probabilities[:images] + probabilities[images:, partners]) / 2
    mirrored_loc = loc[images:, partners].float()  # [B, A, 4]
    mirrored_loc[..., 0] = -mirrored_loc[..., 0]
    return mean_probabilities.clamp_min(1e-12).log(), (loc[:images].float() + mirrored_loc) / 2


def merge_mirrored(conf: Tensor, loc: Tensor, anchors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The outputs of B images followed by their mirror images (conf [2B, A, C], loc [2B, A, 4]; anchors [A, 4]
    cxcywh) as the outputs of B images over twice the default boxes: conf [B, 2A, C], loc [B, 2A, 4], anchors
    [2A, 4]. A mirror image's default box at centre x is the original image's box at 1 - x, and its x offset
    changes sign, so decoding gives each mirrored prediction in the original image's frame; one NMS then merges
    both views' candidates."""
    images = conf.shape[0] // 2
    mirrored_loc = loc[images:].clone()
    mirrored_loc[..., 0] = -mirrored_loc[..., 0]
    mirrored_anchors = anchors.clone()
    mirrored_anchors[:, 0] = 1.0 - mirrored_anchors[:, 0]
    return (
        torch.cat([conf[:images], conf[images:]], dim=1),
        torch.cat([loc[:images], mirrored_loc], dim=1),
        torch.cat([anchors, mirrored_anchors]),
    )




def to_pixels(detections: dict[str, Tensor], height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised xyxy detections of one image -> (boxes [K, 4] pixels, scores [K], labels [K]) as numpy."""
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    boxes = detections["boxes"].float().cpu() * scale
    return boxes.numpy(), detections["scores"].float().cpu().numpy(), detections["labels"].cpu().numpy()


@dataclass
class Detector:
    """A model ready to detect: images of any size in (paths, numpy BGR arrays as OpenCV gives, RGB tensors), each
    prepared by :func:`~ssdcli.engine.inference.preprocess.prepare`, run by ``backend`` with ``settings``, and
    :class:`Detections` in each image's pixels out.

    ``detector(images)`` takes one image or a list; :meth:`detect` one image; :meth:`detect_batch` images already
    prepared. ``settings``, ``classes`` (the class names whose detections are kept; None: every class) and
    ``flip`` (test-time flip, see :class:`DetectOptions`) may be changed between calls. ``format`` is one of
    :data:`MODEL_FORMATS`; ``pretrained`` names torchvision's weights,
    None otherwise.
    """

    spec: ModelSpec
    backend: Backend
    settings: PostprocessSettings
    path: Path
    format: str = "checkpoint"
    pretrained: str | None = None
    classes: tuple[str, ...] | None = None
    flip: bool = False

    def __post_init__(self) -> None:
        self._label_ids()  # unknown class names refused before any detection

    def _label_ids(self) -> list[int] | None:
        """The labels of ``classes``, None for every class; UsageError naming a class the model does not know."""
        if self.classes is None:
            return None
        known = {name: i for i, name in enumerate(self.spec.class_names) if i > 0}
        unknown = [c for c in self.classes if c not in known]
        if unknown:
            raise UsageError(f"classes: unknown class(es) {unknown}; the model knows {list(known)}")
        return [known[c] for c in self.classes]

    @property
    def device(self) -> torch.device:
        return self.backend.device

    @torch.no_grad()
    def detect_batch(self, batch: Tensor) -> list[dict[str, Tensor]]:
        """Prepared images [B, 3, S, S] -> per image ``boxes`` [K, 4] xyxy normalised, ``scores`` [K], ``labels``
        [K], every class (``classes`` applies to the detections in pixels)."""
        return self.backend(batch, self.settings, self.flip)

    def predict_rgb(self, images: Sequence[Tensor]) -> list[Detections]:
        """Detections for a batch of [3, H, W] uint8 RGB tensors, in their pixels."""
        if not images:
            return []
        batch = torch.stack([prepare(image, self.spec) for image in images])  # [B, 3, S, S]
        keep = self._label_ids()
        return [
            self._in_pixels(found, int(image.shape[1]), int(image.shape[2]), keep)
            for image, found in zip(images, self.detect_batch(batch), strict=True)
        ]

    def _in_pixels(self, found: dict[str, Tensor], height: int, width: int, keep: list[int] | None) -> Detections:
        boxes, scores, labels = to_pixels(found, height, width)
        if keep is not None:
            mask = np.isin(labels, keep)
            boxes, scores, labels = boxes[mask], scores[mask], labels[mask]
        names = tuple(self.spec.class_names[int(label)] for label in labels)
        return Detections(boxes, scores, labels, names=names, image_size=(height, width))

    def detect(self, image: ImageLike) -> Detections:
        """The detections of one image (a path, a numpy BGR array or an RGB tensor) in its pixels."""
        return self.predict_rgb([to_rgb_tensor(image)])[0]

    def __call__(self, images: ImageLike | Sequence[ImageLike], batch_size: int = 16) -> list[Detections]:
        items = [images] if isinstance(images, (str, Path, np.ndarray, Tensor)) else list(images)
        results: list[Detections] = []
        for start in range(0, len(items), batch_size):
            results.extend(self.predict_rgb([to_rgb_tensor(item) for item in items[start : start + batch_size]]))
        return results


def guess_model_format(path: str | Path) -> str:
    """``onnx`` for ``.onnx``, ``torchscript`` for ``.torchscript.pt`` or ``.ts``, ``openvino`` for a ``.xml`` file
    or a folder holding ``model.xml`` (as ``ssd export`` names them), else ``checkpoint``."""
    from ssdcli.engine.inference.openvino_runtime import is_openvino

    name = Path(path).name.lower()
    if is_openvino(path):
        return "openvino"
    if name.endswith(".onnx"):
        return "onnx"
    if name.endswith(".torchscript.pt") or name.endswith(".ts"):
        return "torchscript"
    return "checkpoint"


@dataclass(frozen=True)
class _Opened:
    """A model file opened: its spec, the backend that runs it, the path it came from, torchvision's weights name."""

    spec: ModelSpec
    backend: Backend
    path: Path
    pretrained: str | None = None


def _checkpoint(path: str | Path, device: torch.device) -> _Opened:
    loaded = load_model(path, device)
    if device.type == "cuda":
        loaded.model.to(memory_format=torch.channels_last)
    backend = NetworkBackend.of(loaded.model, loaded.spec.layout, device)
    return _Opened(loaded.spec, backend, loaded.path, loaded.pretrained)


@contextmanager
def torchscript_quiet() -> Iterator[None]:
    """Around ``torch.jit.save`` and ``torch.jit.load``: torch warns on each (FutureWarning) that TorchScript is
    deprecated; for a user of ``ssd export --to torchscript`` or of such a file that line says nothing."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        yield


def _torchscript(path: Path, device: torch.device) -> _Opened:
    from ssdcli.engine.inference.onnx_runtime import model_spec

    if not path.is_file():
        raise CheckpointError("TorchScript file not found", path=path)
    extra = {"ssdcli.json": ""}
    try:
        with torchscript_quiet():
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as error:  # noqa: BLE001 - torch.jit raises many kinds for a bad file
        raise CheckpointError(f"not a readable TorchScript file ({str(error).splitlines()[0]})", path=path) from None
    if not extra["ssdcli.json"]:
        raise CheckpointError("TorchScript file has no ssdcli metadata (export it with 'ssd export')", path=path)
    spec = model_spec(json.loads(extra["ssdcli.json"]), path, "TorchScript file")
    module.eval()
    return _Opened(spec, NetworkBackend.of(module, spec.layout, device), path)


def _onnx(path: Path) -> _Opened:
    from ssdcli.engine.inference.onnx_runtime import (
        DecodedBackend,
        OnnxNetwork,
        box_scale,
        built_in_settings,
        input_feed,
        model_spec,
        open_onnx,
    )

    session, meta = open_onnx(path)
    spec = model_spec(meta, path)
    feed = input_feed(meta, spec)
    if meta.get("with_nms"):
        backend: Backend = DecodedBackend(session, feed, box_scale(meta, spec), built_in_settings(meta, spec))
    else:
        backend = NetworkBackend.of(OnnxNetwork(session, feed), spec.layout)
    return _Opened(spec, backend, path)


def _openvino(path: Path) -> _Opened:
    from ssdcli.engine.inference.onnx_runtime import model_spec
    from ssdcli.engine.inference.openvino_runtime import OpenVinoNetwork, open_openvino

    compiled, meta = open_openvino(path)
    spec = model_spec(meta, path, "OpenVINO model")
    return _Opened(spec, NetworkBackend.of(OpenVinoNetwork(compiled), spec.layout), path)


def _open(path: str | Path, model_format: str, device: torch.device) -> _Opened:
    if model_format == "onnx":
        return _onnx(Path(path))
    if model_format == "torchscript":
        return _torchscript(Path(path), device)
    if model_format == "openvino":
        return _openvino(Path(path))
    return _checkpoint(path, device)


def load_detector(
    path: str | Path,
    model_format: str = "auto",
    device: torch.device | str = "cpu",
    options: DetectOptions | None = None,
) -> Detector:
    """A checkpoint (or torchvision's detector, by weights name or file: see ``load_model``), an ONNX file (with or
    without NMS in the graph), a TorchScript file or an OpenVINO export (its folder or ``.xml`` file) as a
    :class:`Detector`, with the model's own detection settings (``spec.postprocess``: ssdcli's evaluation settings
    for checkpoints, torchvision's for its detectors) where ``options`` (None: all) leaves them None.

    ``model_format`` "auto" guesses from the file name (:func:`guess_model_format`). ONNX files run on the CPU
    with ONNX Runtime, OpenVINO exports on the CPU with OpenVINO. UsageError for options the file cannot honour
    (another NMS IoU than the one in its graph, a score threshold below the scores its graph drops).
    """
    fmt = guess_model_format(path) if model_format == "auto" else model_format
    if fmt not in MODEL_FORMATS:
        raise UsageError(f"unknown model format {fmt!r} (choose from {', '.join(MODEL_FORMATS)})")
    options = options or DetectOptions()
    opened = _open(path, fmt, torch.device(device))
    settings = options.over(opened.spec.postprocess)
    opened.backend.check(settings, options, opened.path)
    return Detector(
        opened.spec, opened.backend, settings, opened.path, fmt, opened.pretrained, options.classes, options.flip
    )
