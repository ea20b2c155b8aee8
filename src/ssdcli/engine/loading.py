"""Rebuilding a trained model from a checkpoint alone (config, classes and anchors travel inside it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ssdcli.errors import CheckpointError
from ssdcli.models.build import build_model
from ssdcli.models.config import ModelConfig
from ssdcli.models.ssd import SSD

from .checkpoint import load_checkpoint


@dataclass(frozen=True)
class LoadedModel:
    model: SSD
    config: ModelConfig
    class_names: tuple[str, ...]  # index 0 = background
    category_ids: tuple[int, ...]  # contiguous label -> the data set's own id
    path: Path


def load_model(path: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """The model of a checkpoint in eval mode on ``device``; CheckpointError naming the file on any mismatch."""
    checkpoint = load_checkpoint(path)
    try:
        config = ModelConfig.from_dict(checkpoint.model_config)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"bad model config in checkpoint: {error}", path=path) from None
    if len(checkpoint.class_names) != config.num_classes:
        raise CheckpointError(
            f"{len(checkpoint.class_names)} class names for a model with {config.num_classes} classes", path=path
        )
    model = build_model(config)
    try:
        model.load_state_dict(checkpoint.model_state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise CheckpointError(f"weights do not fit the model {config.arch} ({first})", path=path) from None
    model.to(device).eval()
    return LoadedModel(model, config, checkpoint.class_names, checkpoint.category_ids, Path(path))
