"""Running an exported ONNX file with ONNX Runtime; everything it needs comes from the file's metadata."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ssdcli.core.postprocess import EVAL_SETTINGS, PostprocessSettings
from ssdcli.engine.inference.options import DetectOptions
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


class DecodedBackend:
    """An ONNX file exported with ``--with-nms``: the graph decodes and suppresses at the NMS IoU and above the lowest
    score it was built with (``built_in``); this keeps the score threshold and the top-k per image of the settings
    it is called with. Runs on the CPU."""

    device = torch.device("cpu")

    def __init__(self, session: Any, feed: InputFeed, box_scale: float, built_in: PostprocessSettings) -> None:
        self.session = session
        self.feed = feed
        self.box_scale = box_scale
        self.built_in = built_in

    def __call__(self, batch: Tensor, settings: PostprocessSettings, flip: bool = False) -> list[dict[str, Tensor]]:
        """Images [B, 3, S, S] -> per image ``boxes`` [K, 4] xyxy normalised (the graph's boxes divided by
        ``box_scale``: S for a file that gives pixels), ``scores`` [K] and ``labels`` [K], scores above
        ``settings.score_threshold``, the ``settings.top_k`` best (as postprocess gives). ``flip`` is refused by
        :meth:`check` (the graph suppresses alone)."""
        if flip:
            raise UsageError("test-time flip needs a model whose NMS is ssdcli's (this file has NMS built in)")
        parts, offset = [], 0
        for outputs, real in _run_in_batches(self.session, batch, self.feed):  # boxes, scores, labels, batch_index
            keep = outputs[3] < real  # drops the padding images' detections
            parts.append([a[keep] for a in outputs[:3]] + [outputs[3][keep] + offset])
            offset += real
        boxes, scores, labels, batch_index = (torch.from_numpy(np.concatenate(column)) for column in zip(*parts))
        boxes = boxes / self.box_scale
        results = []
        for i in range(batch.shape[0]):
            mine = (batch_index == i) & (scores > settings.score_threshold)
            order = torch.argsort(scores[mine], descending=True, stable=True)[: settings.top_k]
            found = {"boxes": boxes[mine][order], "scores": scores[mine][order], "labels": labels[mine][order].long()}
            results.append(found)
        return results

    def check(self, settings: PostprocessSettings, options: DetectOptions, path: Path) -> None:
        """Refuse settings the graph cannot honour instead of ignoring them: another NMS IoU than its own, a score
        threshold below the scores it drops (``options``: the settings the caller chose, the rest the model's)."""
        built_in = self.built_in
        if options.flip:
            raise UsageError(
                "test-time flip merges both views' candidates in one NMS, and this file has NMS built in; export "
                "without `with_nms` to flip",
                path=path,
            )
        if options.iou_threshold is not None and abs(settings.iou_threshold - built_in.iou_threshold) > 1e-6:
            raise UsageError(
                f"`iou_threshold` {settings.iou_threshold:g}: this file has NMS at IoU {built_in.iou_threshold:g} "
                "built in; export without `with_nms` to choose the IoU when predicting",
                path=path,
            )
        if built_in.score_threshold <= settings.score_threshold:
            return
        if options.conf_threshold is not None:
            raise UsageError(
                f"`conf_threshold` {settings.score_threshold:g}: this file drops scores of "
                f"{built_in.score_threshold:g} and below inside its graph",
                path=path,
            )
        raise UsageError(
            f"this file drops scores up to {built_in.score_threshold:g} inside its graph; evaluation needs scores "
            f"from {settings.score_threshold:g}: export it again with the default score threshold",
            path=path,
        )


def built_in_settings(meta: dict[str, Any], spec: ModelSpec) -> PostprocessSettings:
    """The NMS IoU and lowest score a ``--with-nms`` file's graph was built with (its metadata's ``iou_threshold``,
    ``score_threshold``; where absent, ssdcli's evaluation IoU and no score dropped)."""
    return dataclasses.replace(
        spec.postprocess,
        score_threshold=float(meta.get("score_threshold", 0.0)),
        iou_threshold=float(meta.get("iou_threshold", EVAL_SETTINGS.iou_threshold)),
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


def box_scale(meta: dict[str, Any], spec: ModelSpec) -> float:
    """What a ``--with-nms`` file's boxes are divided by to be normalised: S when they are in input pixels."""
    return float(spec.layout.image_size) if meta.get("boxes") == "pixels" else 1.0
