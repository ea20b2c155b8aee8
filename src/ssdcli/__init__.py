"""ssdcli: train, inspect, evaluate, run and export SSD object detectors on PyTorch.

The core engine (pure tensor code) is importable from here::

    from ssdcli import default_boxes, encode, decode, ssd_loss, postprocess
"""

from __future__ import annotations

__version__ = "0.1.0"

from .core.anchors import AnchorLayout, BUILTIN_LAYOUTS, default_boxes, get_layout
from .core.coder import decode
from .core.loss import SSDLoss, ssd_loss
from .core.matching import EncodedTargets, Match, encode, match
from .core.postprocess import postprocess

__all__ = [
    "AnchorLayout",
    "BUILTIN_LAYOUTS",
    "EncodedTargets",
    "Match",
    "SSDLoss",
    "__version__",
    "decode",
    "default_boxes",
    "encode",
    "get_layout",
    "match",
    "postprocess",
    "ssd_loss",
]
