"""SSD networks: the architectures (one entry each in ``zoo``), configuration as data, backbones from torchvision,
prediction heads and the model builder.

    from ssdcli.models import build_model, default_config

    model = build_model(default_config("ssd_tiny", num_classes=4))
    conf, loc = model(images)  # images [B, 3, 160, 160] -> conf [B, 2390, 4], loc [B, 2390, 4]
"""

from __future__ import annotations

from .build import build_backbone, build_model, check_feature_maps
from .config import ARCHS, ModelConfig, default_config
from .heads import SSDHead
from .ssd import SSD
from .weights import hub_cache_file, imagenet_weights, load_backbone_weights, read_state_dict
from .zoo import ARCHITECTURES, SSD_TINY_LAYOUT, Architecture

__all__ = [
    "ARCHITECTURES",
    "ARCHS",
    "Architecture",
    "SSD",
    "SSDHead",
    "SSD_TINY_LAYOUT",
    "ModelConfig",
    "build_backbone",
    "build_model",
    "check_feature_maps",
    "default_config",
    "hub_cache_file",
    "imagenet_weights",
    "load_backbone_weights",
    "read_state_dict",
]
