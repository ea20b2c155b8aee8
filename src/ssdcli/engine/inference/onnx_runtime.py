"""Running an exported ONNX file with ONNX Runtime; everything it needs comes from the file's metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ssdcli.core.postprocess import EVAL_SETTINGS, PostprocessSettings
from ssdcli.engine.inference.predictor import NetworkBackend, Predictor, model_settings
from ssdcli.errors import CheckpointError, UsageError
from ssdcli.models.spec import ModelSpec

#: The key of ssdcli's metadata (a JSON object: model config, classes, postprocessing) in an exported file.
METADATA_KEY = "ssdcli"
#: The ``input`` metadata of an ONNX file: float images [B, 3, S, S] normalised, or uint8 pixels [B, S, S, 3] RGB.
NORMALISED_INPUT = "float32 [B, 3, S, S] normalised"
PIXEL_INPUT = "uint8 [B, S, S, 3] RGB"


def _open_session(path: Path) -> tuple[Any, dict[str, Any]]:
    try:
        import onnxruntime
    except ImportError:
        raise UsageError("ONNX files need the optional package onnxruntime: pip install 'ssdcli[onnx]'") from None
    if not path.is_file():
        raise CheckpointError("ONNX file not found", path=path)
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise CheckpointError(f"not a readable ONNX model ({str(error).splitlines()[0]})", path=path) from None
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if raw is None:
        raise CheckpointError("ONNX file has no ssdcli metadata (export it with 'ssd export')", path=path)
    return session, json.loads(raw)


def _fixed_batch(session: Any) -> int | None:
    """The batch size of a file exported without a dynamic batch axis, else None."""
    size = session.get_inputs()[0].shape[0]
    return size if isinstance(size, int) else None


@dataclass(frozen=True)
class InputFeed:
    """How a file takes its images: normalised float [B, 3, S, S] (``pixels`` False), or uint8 RGB pixels
    [B, S, S, 3] (``ssd export --with-preprocess``), recovered exactly from the normalised images ssdcli prepares
    (which come from 8-bit pixels)."""

    pixels: bool = False
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)

    def __call__(self, images: Tensor) -> np.ndarray:
        if not self.pixels:
            return images.cpu().numpy()
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        pixels = ((images.cpu() * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).contiguous().numpy()  # [B, S, S, 3]


def input_feed(meta: dict[str, Any], spec: ModelSpec) -> InputFeed:
    """The :class:`InputFeed` an exported file's metadata asks for."""
    return InputFeed(meta.get("input") == PIXEL_INPUT, tuple(spec.mean), tuple(spec.std))


def _run_in_batches(session: Any, images: Tensor, feed: InputFeed = InputFeed()) -> list[tuple[list[np.ndarray], int]]:
    """Run the graph on images [B, 3, S, S] (fed as ``feed`` says): at once, or, for a fixed batch axis, in slices
    of that size (the last one padded with zero images). Returns (outputs, real images in the slice) per slice."""
    array = feed(images)
    fixed = _fixed_batch(session)
    if fixed is None:
        return [(session.run(None, {"images": array}), array.shape[0])]
    runs = []
    for start in range(0, array.shape[0], fixed):
        part = array[start : start + fixed]
        real = part.shape[0]
        if real < fixed:
            part = np.concatenate([part, np.zeros((fixed - real, *part.shape[1:]), dtype=part.dtype)])
        runs.append((session.run(None, {"images": part}), real))
    return runs


class OnnxNetwork:
    """images [B, 3, S, S] -> (conf [B, A, C], loc [B, A, 4]) through ONNX Runtime."""

    def __init__(self, session: Any, feed: InputFeed = InputFeed()) -> None:
        self.session = session
        self.feed = feed

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        runs = _run_in_batches(self.session, images, self.feed)
        conf = np.concatenate([outputs[0][:real] for outputs, real in runs])
        loc = np.concatenate([outputs[1][:real] for outputs, real in runs])
        return torch.from_numpy(conf), torch.from_numpy(loc)


def decoded_detections(
    session: Any,
    batch: Tensor,
    score_threshold: float,
    top_k: int,
    feed: InputFeed = InputFeed(),
    box_scale: float = 1.0,
) -> list[dict[str, Tensor]]:
    """Run a graph exported with ``--with-nms`` on images [B, 3, S, S]: per image ``boxes`` [K, 4] xyxy normalised
    (the graph's boxes divided by ``box_scale``: S for a file that gives pixels), ``scores`` [K] and ``labels``
    [K], scores above ``score_threshold``, the ``top_k`` best (as postprocess gives)."""
    parts, offset = [], 0
    for outputs, real in _run_in_batches(session, batch, feed):  # outputs: boxes, scores, labels, batch_index
        keep = outputs[3] < real  # drops the padding images' detections
        parts.append([a[keep] for a in outputs[:3]] + [outputs[3][keep] + offset])
        offset += real
    boxes, scores, labels, batch_index = (torch.from_numpy(np.concatenate(column)) for column in zip(*parts))
    boxes = boxes / box_scale
    results = []
    for i in range(batch.shape[0]):
        mine = (batch_index == i) & (scores > score_threshold)
        order = torch.argsort(scores[mine], descending=True, stable=True)[:top_k]
        results.append({"boxes": boxes[mine][order], "scores": scores[mine][order], "labels": labels[mine][order].long()})
    return results


class DecodedBackend:
    """An ONNX file exported with ``--with-nms``: the graph decodes and suppresses at the NMS IoU it was built with;
    this keeps the score threshold and the top-k per image."""

    def __init__(self, session: Any, feed: InputFeed, box_scale: float) -> None:
        self.session = session
        self.feed = feed
        self.box_scale = box_scale

    def __call__(self, batch: Tensor, settings: PostprocessSettings) -> list[dict[str, Tensor]]:
        return decoded_detections(
            self.session, batch, settings.score_threshold, settings.top_k, self.feed, self.box_scale
        )


def _check_built_in_nms(meta: dict[str, Any], options: dict[str, Any], path: Path) -> None:
    """A file exported with ``--with-nms`` has its NMS IoU and lowest score fixed: refuse options it cannot honour
    instead of ignoring them."""
    iou = float(options.get("iou_threshold", EVAL_SETTINGS.iou_threshold))
    built_in_iou = float(meta.get("iou_threshold", EVAL_SETTINGS.iou_threshold))
    if abs(iou - built_in_iou) > 1e-6:
        raise UsageError(
            f"`iou_threshold` {iou:g}: this file has NMS at IoU {built_in_iou:g} built in; export without `with_nms` to choose "
            "the IoU when predicting",
            path=path,
        )
    conf = float(options.get("conf_threshold", 0.25))
    built_in_score = float(meta.get("score_threshold", 0.0))
    if conf < built_in_score:
        raise UsageError(
            f"`conf_threshold` {conf:g}: this file drops scores of {built_in_score:g} and below inside its graph", path=path
        )


def model_spec(meta: dict[str, Any], path: str | Path, what: str = "ONNX file") -> ModelSpec:
    """The :class:`ModelSpec` of an exported file's ssdcli metadata (detection settings included: ssdcli's
    evaluation settings when it has none); CheckpointError naming the file if it is bad."""
    try:
        return ModelSpec.from_dict(meta)
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"bad ssdcli metadata in {what}: {error}", path=path) from None


def open_onnx(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """An ONNX Runtime session of an exported file and its ssdcli metadata."""
    return _open_session(Path(path))


def onnx_predictor(path: str | Path, **options: Any) -> Predictor:
    session, meta = _open_session(Path(path))
    spec = model_spec(meta, path)
    options = model_settings(spec.postprocess, options)
    feed = input_feed(meta, spec)
    if meta.get("with_nms"):
        _check_built_in_nms(meta, options, Path(path))
        return Predictor(DecodedBackend(session, feed, box_scale(meta, spec)), spec, **options)
    return Predictor(NetworkBackend(OnnxNetwork(session, feed), spec.layout), spec, **options)


def box_scale(meta: dict[str, Any], spec: ModelSpec) -> float:
    """What a ``--with-nms`` file's boxes are divided by to be normalised: S when they are in input pixels."""
    return float(spec.layout.image_size) if meta.get("boxes") == "pixels" else 1.0
