"""SSD networks: the architectures (one entry each in ``zoo``), a model as data (``spec``: its network config and
the spec a trained model carries), backbones from torchvision, prediction heads and the model builder.

    from ssdcli.models import build_model, default_config

    model = build_model(default_config("ssd_tiny", num_classes=4))
    conf, loc = model(images)  # images [B, 3, 160, 160] -> conf [B, 2390, 4], loc [B, 2390, 4]

The names below are loaded on first use, so that importing ``ssdcli.models.zoo`` (the registry that
``ssd train --help`` lists) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the module of this package that defines it.
_EXPORTS = {
    "ARCHITECTURES": "zoo",
    "Architecture": "zoo",
    "SSD": "ssd",
    "SSDHead": "heads",
    "SSD_TINY_LAYOUT": "zoo",
    "ModelConfig": "spec",
    "ModelSpec": "spec",
    "build_backbone": "build",
    "build_model": "build",
    "check_feature_maps": "build",
    "check_arch": "zoo",
    "default_config": "spec",
    "hub_cache_file": "weights",
    "imagenet_weights": "weights",
    "load_backbone_weights": "weights",
    "read_state_dict": "weights",
}

if TYPE_CHECKING:
    from .build import build_backbone, build_model, check_feature_maps
    from .heads import SSDHead
    from .spec import ModelConfig, ModelSpec, default_config
    from .ssd import SSD
    from .weights import hub_cache_file, imagenet_weights, load_backbone_weights, read_state_dict
    from .zoo import ARCHITECTURES, SSD_TINY_LAYOUT, Architecture, check_arch


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ssdcli.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "SSD",
    "SSDHead",
    "SSD_TINY_LAYOUT",
    "ModelConfig",
    "ModelSpec",
    "build_backbone",
    "build_model",
    "check_arch",
    "check_feature_maps",
    "default_config",
    "hub_cache_file",
    "imagenet_weights",
    "load_backbone_weights",
    "read_state_dict",
]
