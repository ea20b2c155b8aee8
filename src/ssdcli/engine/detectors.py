"""A trained model in any of its forms (checkpoint, ONNX file, TorchScript file) as one thing that detects.

Evaluating an exported file the way a checkpoint is evaluated (same data pipeline, same score threshold, same
evaluators) is what shows that the export kept the model's accuracy: :func:`load_detector` gives a
:class:`LoadedDetector` whatever the file, and :func:`ssdcli.engine.inference.detect_index_with` runs it over a
data set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from ssdcli.core.anchors import default_boxes
from ssdcli.core.postprocess import postprocess
from ssdcli.errors import CheckpointError, UsageError

from .predictor import ModelInfo

#: images [B, 3, S, S] normalised -> per image {"boxes" [K, 4] xyxy normalised, "scores" [K], "labels" [K]}.
BatchDetector = Callable[[Tensor], list[dict[str, Tensor]]]

MODEL_FORMATS = ("checkpoint", "onnx", "torchscript")


@dataclass(frozen=True)
class LoadedDetector:
    """A model file ready to detect: ``detect`` on normalised images of ``info.layout.image_size``."""

    detect: BatchDetector
    info: ModelInfo
    format: str  # one of MODEL_FORMATS
    device: torch.device


def guess_model_format(path: str | Path) -> str:
    """``onnx`` for ``.onnx``, ``torchscript`` for ``.torchscript.pt`` (as ``ssd export`` names them), else
    ``checkpoint``."""
    name = Path(path).name.lower()
    if name.endswith(".onnx"):
        return "onnx"
    if name.endswith(".torchscript.pt") or name.endswith(".ts"):
        return "torchscript"
    return "checkpoint"


def _raw_detector(
    network: Callable[[Tensor], tuple[Tensor, Tensor]],
    anchors: Tensor,
    device: torch.device,
    score_threshold: float,
    iou_threshold: float,
    top_k: int,
) -> BatchDetector:
    """A detector over a network that gives (conf [B, A, C], loc [B, A, 4]): the project's decoding and NMS."""

    @torch.no_grad()
    def detect(images: Tensor) -> list[dict[str, Tensor]]:
        images = images.to(device)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        conf, loc = network(images)
        return postprocess(conf.to(device), loc.to(device), anchors, score_threshold, iou_threshold, top_k)

    return detect


def _checkpoint(path: Path, device: torch.device, score: float, iou: float, top_k: int) -> LoadedDetector:
    from .loading import load_model

    loaded = load_model(path, device)
    if device.type == "cuda":
        loaded.model.to(memory_format=torch.channels_last)
    config = loaded.config
    info = ModelInfo(config.arch, config.layout, loaded.class_names, loaded.category_ids, config.mean, config.std)
    anchors = default_boxes(config.layout, device=device)
    return LoadedDetector(_raw_detector(loaded.model, anchors, device, score, iou, top_k), info, "checkpoint", device)


def _onnx(path: Path, score: float, iou: float, top_k: int) -> LoadedDetector:
    from .onnx_runtime import OnnxNetwork, decoded_detections, model_info, open_onnx

    session, meta = open_onnx(path)
    info = model_info(meta, path)
    cpu = torch.device("cpu")
    if meta.get("with_nms"):
        built_in_score, built_in_iou = float(meta.get("score_threshold", 0.0)), float(meta.get("iou_threshold", 0.45))
        if score < built_in_score or abs(iou - built_in_iou) > 1e-6:
            raise UsageError(
                f"this file has NMS at IoU {built_in_iou:g} and a score threshold of {built_in_score:g} built in; "
                f"evaluation needs IoU {iou:g} and scores from {score:g}: export it again with those",
                path=path,
            )
        return LoadedDetector(lambda images: decoded_detections(session, images, score, top_k), info, "onnx", cpu)
    anchors = default_boxes(info.layout, device=cpu)
    return LoadedDetector(_raw_detector(OnnxNetwork(session), anchors, cpu, score, iou, top_k), info, "onnx", cpu)


def _torchscript(path: Path, device: torch.device, score: float, iou: float, top_k: int) -> LoadedDetector:
    from .onnx_runtime import model_info

    if not path.is_file():
        raise CheckpointError("TorchScript file not found", path=path)
    extra = {"ssdcli.json": ""}
    try:
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as error:  # noqa: BLE001 - torch.jit raises many kinds for a bad file
        raise CheckpointError(f"not a readable TorchScript file ({str(error).splitlines()[0]})", path=path) from None
    if not extra["ssdcli.json"]:
        raise CheckpointError("TorchScript file has no ssdcli metadata (export it with 'ssd export')", path=path)
    meta = json.loads(extra["ssdcli.json"])
    info = model_info(meta, path, "TorchScript file")
    module.eval()
    anchors = default_boxes(info.layout, device=device)
    return LoadedDetector(_raw_detector(module, anchors, device, score, iou, top_k), info, "torchscript", device)


def load_detector(
    path: str | Path,
    model_format: str = "auto",
    device: torch.device | str = "cpu",
    score_threshold: float = 0.01,
    iou_threshold: float = 0.45,
    top_k: int = 200,
) -> LoadedDetector:
    """A checkpoint, an ONNX file (with or without NMS in the graph) or a TorchScript file as a detector.

    ``model_format`` "auto" guesses from the file name (:func:`guess_model_format`). ONNX files run on the CPU
    with ONNX Runtime. The defaults are evaluation's: scores above 0.01, NMS at IoU 0.45, 200 per image.
    """
    path, device = Path(path), torch.device(device)
    fmt = guess_model_format(path) if model_format == "auto" else model_format
    if fmt not in MODEL_FORMATS:
        raise UsageError(f"unknown model format {fmt!r} (choose from {', '.join(MODEL_FORMATS)})")
    if fmt == "onnx":
        return _onnx(path, score_threshold, iou_threshold, top_k)
    if fmt == "torchscript":
        return _torchscript(path, device, score_threshold, iou_threshold, top_k)
    return _checkpoint(path, device, score_threshold, iou_threshold, top_k)

