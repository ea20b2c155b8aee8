"""Rebuilding a model for inference: from a checkpoint alone (config, classes and anchors travel inside it), or
from one of torchvision's COCO-trained SSD detectors (by weights name or state dict file)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ssdcli.engine.checkpoint import checkpoint_from_payload, read_payload
from ssdcli.errors import CheckpointError, UsageError
from ssdcli.models.build import build_model
from ssdcli.models.pretrained import PretrainedModel, detector_by_name, load_pretrained, model_from_state
from ssdcli.models.spec import ModelSpec
from ssdcli.models.ssd import SSD
from ssdcli.models.weights import is_state_dict


@dataclass(frozen=True)
class LoadedModel:
    """A model rebuilt for inference (eval mode) with its spec: config, class names (index 0 the background),
    category ids, and its own detection settings (ssdcli's evaluation settings for checkpoints, torchvision's for
    its detectors)."""

    model: SSD
    spec: ModelSpec
    path: Path
    #: For torchvision's detectors, its weights name (``SSD300_VGG16_Weights.COCO_V1``, whether loaded by name or
    #: from a file); None for checkpoints.
    pretrained: str | None = None


def _from_pretrained(pretrained: PretrainedModel, device: torch.device | str) -> LoadedModel:
    model = pretrained.model.to(device).eval()
    return LoadedModel(model, pretrained.spec, pretrained.path, pretrained.detector.name)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """The model of a checkpoint in eval mode on ``device``; CheckpointError naming the file on any mismatch.

    ``path`` may also name torchvision's COCO weights (``SSD300_VGG16_Weights.COCO_V1``,
    ``SSDLite320_MobileNet_V3_Large_Weights.COCO_V1``, read from the torch hub cache) or be their state dict file.
    """
    if detector_by_name(path) is not None:
        return _from_pretrained(load_pretrained(path), device)
    payload = read_payload(path)
    if is_state_dict(payload):  # a bare state dict, not a checkpoint: torchvision's detectors are the ones known
        return _from_pretrained(model_from_state(payload, Path(path)), device)  # type: ignore[arg-type]
    checkpoint = checkpoint_from_payload(payload, path)
    config = checkpoint.spec.config
    try:
        model = build_model(config)
    except UsageError as error:  # the architecture does not fit the anchor layout stored beside it
        raise CheckpointError(error.message, path=path) from None
    try:
        model.load_state_dict(checkpoint.model_state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise CheckpointError(f"weights do not fit the model {config.arch} ({first})", path=path) from None
    model.to(device).eval()
    return LoadedModel(model, checkpoint.spec, Path(path))
