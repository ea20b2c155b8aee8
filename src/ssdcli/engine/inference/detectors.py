"""A trained model in any of its forms (checkpoint, ONNX file, TorchScript file, OpenVINO folder) as one thing that
detects.

Evaluating an exported file the way a checkpoint is evaluated (same data pipeline, same score threshold, same
evaluators) is what shows that the export kept the model's accuracy: :func:`load_detector` gives a
:class:`LoadedDetector` whatever the file, and :func:`ssdcli.engine.inference.batched.detect_index_with` runs it over a
data set.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ssdcli.config import MODEL_FORMATS
from ssdcli.core.anchors import default_boxes
from ssdcli.core.postprocess import PostprocessSettings, postprocess
from ssdcli.engine.inference.loading import load_model
from ssdcli.engine.inference.predictor import NetworkBackend, Predictor, model_settings
from ssdcli.errors import CheckpointError, UsageError
from ssdcli.models.spec import ModelSpec

#: images [B, 3, S, S] normalised -> per image {"boxes" [K, 4] xyxy normalised, "scores" [K], "labels" [K]}.
BatchDetector = Callable[[Tensor], list[dict[str, Tensor]]]


@dataclass(frozen=True)
class LoadedDetector:
    """A model file ready to detect: ``detect`` on normalised images of ``spec.layout.image_size``, with the
    detection settings of ``spec.postprocess`` (the model's own: ssdcli's evaluation settings for checkpoints,
    torchvision's for its detectors). ``pretrained`` names torchvision's weights, None otherwise."""

    detect: BatchDetector
    spec: ModelSpec
    format: str  # one of MODEL_FORMATS
    device: torch.device
    path: Path
    pretrained: str | None = None


def guess_model_format(path: str | Path) -> str:
    """``onnx`` for ``.onnx``, ``torchscript`` for ``.torchscript.pt``, ``openvino`` for a ``.xml`` file or a folder
    holding ``model.xml`` (as ``ssd export`` names them), else ``checkpoint``."""
    from ssdcli.engine.inference.openvino_runtime import is_openvino

    name = Path(path).name.lower()
    if is_openvino(path):
        return "openvino"
    if name.endswith(".onnx"):
        return "onnx"
    if name.endswith(".torchscript.pt") or name.endswith(".ts"):
        return "torchscript"
    return "checkpoint"


def _raw_detector(
    network: Callable[[Tensor], tuple[Tensor, Tensor]], anchors: Tensor, device: torch.device, settings: PostprocessSettings
) -> BatchDetector:
    """A detector over a network that gives (conf [B, A, C], loc [B, A, 4]): the project's decoding and NMS."""

    @torch.no_grad()
    def detect(images: Tensor) -> list[dict[str, Tensor]]:
        images = images.to(device)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        conf, loc = network(images)
        return postprocess(
            conf.to(device),
            loc.to(device),
            anchors,
            settings.score_threshold,
            settings.iou_threshold,
            settings.top_k,
            settings.pre_nms_top_k,
        )

    return detect


def _checkpoint(path: str | Path, device: torch.device) -> LoadedDetector:
    loaded = load_model(path, device)
    if device.type == "cuda":
        loaded.model.to(memory_format=torch.channels_last)
    spec = loaded.spec
    anchors = default_boxes(spec.layout, device=device)
    detect = _raw_detector(loaded.model, anchors, device, spec.postprocess)
    return LoadedDetector(detect, spec, "checkpoint", device, loaded.path, loaded.pretrained)


def _onnx(path: Path) -> LoadedDetector:
    from ssdcli.engine.inference.onnx_runtime import (
        OnnxNetwork,
        box_scale,
        decoded_detections,
        input_feed,
        model_spec,
        open_onnx,
    )

    session, meta = open_onnx(path)
    spec = model_spec(meta, path)
    settings = spec.postprocess
    feed = input_feed(meta, spec)
    cpu = torch.device("cpu")
    if meta.get("with_nms"):
        built_in_score = float(meta.get("score_threshold", settings.score_threshold))
        if built_in_score > settings.score_threshold:
            raise UsageError(
                f"this file drops scores up to {built_in_score:g} inside its graph; evaluation needs scores from "
                f"{settings.score_threshold:g}: export it again with the default score threshold",
                path=path,
            )

        def detect(images: Tensor) -> list[dict[str, Tensor]]:
            return decoded_detections(
                session, images, settings.score_threshold, settings.top_k, feed, box_scale(meta, spec)
            )

        return LoadedDetector(detect, spec, "onnx", cpu, path)
    anchors = default_boxes(spec.layout, device=cpu)
    network = OnnxNetwork(session, feed)
    return LoadedDetector(_raw_detector(network, anchors, cpu, settings), spec, "onnx", cpu, path)


def _openvino(path: Path) -> LoadedDetector:
    from ssdcli.engine.inference.onnx_runtime import model_spec
    from ssdcli.engine.inference.openvino_runtime import OpenVinoNetwork, open_openvino

    compiled, meta = open_openvino(path)
    spec = model_spec(meta, path, "OpenVINO model")
    cpu = torch.device("cpu")
    anchors = default_boxes(spec.layout, device=cpu)
    detect = _raw_detector(OpenVinoNetwork(compiled), anchors, cpu, spec.postprocess)
    return LoadedDetector(detect, spec, "openvino", cpu, path)


@contextmanager
def torchscript_quiet() -> Iterator[None]:
    """Around ``torch.jit.save`` and ``torch.jit.load``: torch warns on each (FutureWarning) that TorchScript is
    deprecated; for a user of ``ssd export --to torchscript`` or of such a file that line says nothing."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        yield


def _torchscript(path: Path, device: torch.device) -> LoadedDetector:
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
    meta = json.loads(extra["ssdcli.json"])
    spec = model_spec(meta, path, "TorchScript file")
    module.eval()
    anchors = default_boxes(spec.layout, device=device)
    detect = _raw_detector(module, anchors, device, spec.postprocess)
    return LoadedDetector(detect, spec, "torchscript", device, path)


def load_detector(path: str | Path, model_format: str = "auto", device: torch.device | str = "cpu") -> LoadedDetector:
    """A checkpoint (or torchvision's detector, see ``load_model``), an ONNX file (with or without NMS in the
    graph), a TorchScript file or an OpenVINO export as a detector with the model's own detection settings.

    ``model_format`` "auto" guesses from the file name (:func:`guess_model_format`). ONNX files run on the CPU
    with ONNX Runtime, OpenVINO exports on the CPU with OpenVINO.
    """
    device = torch.device(device)
    fmt = guess_model_format(path) if model_format == "auto" else model_format
    if fmt not in MODEL_FORMATS:
        raise UsageError(f"unknown model format {fmt!r} (choose from {', '.join(MODEL_FORMATS)})")
    if fmt == "onnx":
        return _onnx(Path(path))
    if fmt == "torchscript":
        return _torchscript(Path(path), device)
    if fmt == "openvino":
        return _openvino(Path(path))
    return _checkpoint(path, device)



def torch_predictor(path: str | Path, device: str | torch.device = "cpu", **options: object) -> Predictor:
    """A predictor over a checkpoint's model, or one of torchvision's detectors (name or file, see ``load_model``).

    Options left out or None take the model's own settings (``LoadedModel.spec.postprocess``)."""
    loaded = load_model(path, device)
    spec = loaded.spec
    options = model_settings(spec.postprocess, options)
    if torch.device(device).type == "cuda":
        loaded.model.to(memory_format=torch.channels_last)
    return Predictor(NetworkBackend(loaded.model, spec.layout, device), spec, **options)  # type: ignore[arg-type]


def load_predictor(path: str | Path, device: str | torch.device = "cpu", **options: object) -> Predictor:
    """A predictor (images in, detections in pixels out) from a checkpoint, torchvision's detector, an exported
    ONNX file (``.onnx``) or an OpenVINO export (its folder or ``.xml`` file)."""
    from ssdcli.engine.inference.openvino_runtime import is_openvino, openvino_predictor

    if is_openvino(path):
        return openvino_predictor(path, **options)
    if Path(path).suffix.lower() == ".onnx":
        from ssdcli.engine.inference.onnx_runtime import onnx_predictor

        return onnx_predictor(path, **options)
    return torch_predictor(path, device, **options)
