"""ssdcli: train, inspect, evaluate, run and export SSD object detectors on PyTorch.

The core engine (pure tensor code) is importable from here::

    from ssdcli import default_boxes, encode, decode, ssd_loss, postprocess
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the core module that defines it. Loaded on first use, so that ``ssd --help`` and the CLI's
#: argument parsing do not import torch.
_CORE_EXPORTS = {
    "AnchorLayout": "layouts",
    "BUILTIN_LAYOUTS": "layouts",
    "default_boxes": "anchors",
    "get_layout": "layouts",
    "decode": "coder",
    "SSDLoss": "loss",
    "ssd_loss": "loss",
    "EncodedTargets": "matching",
    "Match": "matching",
    "encode": "matching",
    "match": "matching",
    "postprocess": "postprocess",
}

if TYPE_CHECKING:
    from .core.anchors import default_boxes
    from .core.coder import decode
    from .core.layouts import BUILTIN_LAYOUTS, AnchorLayout, get_layout
    from .core.loss import SSDLoss, ssd_loss
    from .core.matching import EncodedTargets, Match, encode, match
    from .core.postprocess import postprocess
    from .engine.inference.detectors import Detector
    from .engine.train.config_file import TrainConfig


def __getattr__(name: str) -> Any:
    module = _CORE_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ssdcli' has no attribute {name!r}")
    return getattr(importlib.import_module(f".core.{module}", __name__), name)



def load(
    path: str | Path,
    device: str = "cpu",
    conf_threshold: float | None = None,
    iou_threshold: float | None = None,
    top_k: int | None = None,
    classes: Sequence[str] | None = None,
    pre_nms_top_k: int | None = None,
    flip: bool = False,
    tile: int | None = None,
    overlap: float = 0.2,
) -> Detector:
    """A :class:`~ssdcli.engine.inference.detectors.Detector` from a checkpoint (.pt), an exported ONNX file (.onnx),
    a TorchScript file (.torchscript.pt or .ts), an OpenVINO export (its folder or model.xml), or torchvision's COCO
    detector (``"SSD300_VGG16_Weights.COCO_V1"`` from the torch hub cache, or its file).

    ``ssdcli.load("best.pt")(["a.jpg", bgr_array])`` returns detections in original image pixels. ``conf_threshold``
    None: 0.25 (detections worth showing); the other settings None: the model's own. ``flip``: test-time flip (each
    image and its mirror image, merged by one NMS). ``tile``: also detect in overlapping windows of that many pixels
    (``overlap`` of a window shared), as ``ssd predict --tile`` does.
    """
    from .engine.inference.detectors import load_detector
    from .engine.inference.options import DISPLAY_THRESHOLD, DetectOptions
    from .engine.inference.tiled import TiledDetector, Tiling

    conf = DISPLAY_THRESHOLD if conf_threshold is None else conf_threshold
    chosen = tuple(classes) if classes is not None else None
    options = DetectOptions(conf, iou_threshold, top_k, pre_nms_top_k, chosen, flip)
    tiling = Tiling(tile, overlap) if tile is not None else None  # settings refused before the model loads
    detector = load_detector(path, device=device, options=options)
    return detector if tiling is None else TiledDetector(detector, tiling)


def read_train_config(path: str) -> TrainConfig:
    """The settings a training run used, from its ``config.json`` or a checkpoint of ``ssd train`` (last.pt,
    best.pt), as ``ssd train --config`` reads them: ``ssdcli.read_train_config("runs/train/3/best.pt").optim.lr``.
    """
    from .engine.train.config_file import read_train_config as read

    return read(path)


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
    "read_train_config",
    "ssd_loss",
]
