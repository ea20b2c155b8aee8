"""Turn a :class:`ModelConfig` into an :class:`SSD` network, optionally starting from backbone weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn

from ssdcli.errors import UsageError

from .backbones import feature_map_sizes
from .heads import SSDHead
from .spec import ModelConfig
from .ssd import SSD
from .weights import IMAGENET, load_backbone_weights
from .zoo import ARCHITECTURES, check_arch


def _resolve(config: ModelConfig, backbone_weights: str | Path | None) -> ModelConfig:
    """Fix ``reduced_tail`` for MobileNetV3 (torchvision's rule: reduced unless backbone weights are loaded)."""
    if not ARCHITECTURES[config.arch].has_reduced_tail:
        return config
    if config.reduced_tail is None:
        return dataclasses.replace(config, reduced_tail=backbone_weights is None)
    if config.reduced_tail and str(backbone_weights) == IMAGENET:
        raise UsageError(
            "ImageNet MobileNetV3 weights exist for the full tail only; set reduced_tail to false or leave it unset"
        )
    return config


def build_backbone(config: ModelConfig) -> nn.Module:
    """The randomly initialised backbone of ``config.arch`` (its entry in ``models/zoo.py``)."""
    return ARCHITECTURES[check_arch(config.arch)].build_backbone(config.reduced_tail)


def check_feature_maps(backbone: nn.Module, config: ModelConfig) -> None:
    """UsageError naming both lists unless the backbone's map sizes at the layout's input size are its feature_maps."""
    layout = config.layout
    try:
        sizes = feature_map_sizes(backbone, layout.image_size)
    except (RuntimeError, ValueError) as error:  # e.g. a map smaller than a kernel
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UsageError(
            f"the {config.arch} backbone cannot take the anchor layout's {layout.image_size}x{layout.image_size} "
            f"input: {reason}"
        ) from error
    actual = tuple(h if h == w else (h, w) for h, w in sizes)
    if actual != layout.feature_maps:
        raise UsageError(
            f"the {config.arch} backbone gives feature maps {list(actual)} for a {layout.image_size}x"
            f"{layout.image_size} input, but the anchor layout expects {list(layout.feature_maps)}"
        )


def build_model(config: ModelConfig, backbone_weights: str | Path | None = None) -> SSD:
    """The SSD network of ``config``.

    Args:
        config: architecture, classes, anchor layout (the heads get ``layout.boxes_per_cell`` boxes per cell).
        backbone_weights: ``None`` for random initialisation; ``"imagenet"`` for torchvision's ImageNet weights,
            read from the torch hub cache only (``<torch.hub.get_dir()>/checkpoints``), never downloaded here; or the
            path of a state dict file for the backbone (see ``ssdcli.models.weights``).

    Returns:
        The model; ``model.config`` is ``config`` with ``reduced_tail`` resolved for MobileNetV3 models. Store
        ``model.config`` with the weights: it rebuilds the same modules.

    Raises:
        UsageError: the layout does not fit the backbone, or the architecture has no ImageNet weights.
        CheckpointError: the weights file is missing (for "imagenet": not in the hub cache), unreadable or for
            another model; the message names the file.
    """
    config = _resolve(config, backbone_weights)
    backbone = build_backbone(config)
    check_feature_maps(backbone, config)
    head = SSDHead(
        backbone.out_channels,  # type: ignore[arg-type]  # every backbone's tuple[int, ...]; nn.Module hides it
        config.layout.boxes_per_cell,
        config.num_classes,
        separable=ARCHITECTURES[config.arch].separable_head,
    )
    if backbone_weights is not None:
        load_backbone_weights(backbone, backbone_weights, config)
    return SSD(config, backbone, head)
