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



def load(path: str, device: str = "cpu", **options: object) -> "Predictor":  # noqa: F821
    """A :class:`~ssdcli.engine.predictor.Predictor` from a checkpoint (.pt), an exported ONNX file (.onnx), or
    torchvision's COCO detector (``"SSD300_VGG16_Weights.COCO_V1"`` from the torch hub cache, or its file).

    ``ssdcli.load("best.pt")(["a.jpg", bgr_array])`` returns detections in original image pixels.
    """
    from .engine.predictor import load_predictor

    return load_predictor(path, device, **options)


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
    "load",
    "match",
    "postprocess",
    "ssd_loss",
]
