"""ssdcli: train, inspect, evaluate, run and export SSD object detectors on PyTorch.

The core engine (pure tensor code) is importable from here::

    from ssdcli import default_boxes, encode, decode, ssd_loss, postprocess
"""

from __future__ import annotations

import importlib
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
    from .engine.inference.predictor import Predictor
    from .engine.train.config_file import TrainConfig


def __getattr__(name: str) -> Any:
    module = _CORE_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ssdcli' has no attribute {name!r}")
    return getattr(importlib.import_module(f".core.{module}", __name__), name)



def load(path: str, device: str = "cpu", **options: object) -> Predictor:
    """A :class:`~ssdcli.engine.inference.predictor.Predictor` from a checkpoint (.pt), an exported ONNX file (.onnx), an
    OpenVINO export (its folder or model.xml), or torchvision's COCO detector (``"SSD300_VGG16_Weights.COCO_V1"`` from the torch hub cache, or its file).

    ``ssdcli.load("best.pt")(["a.jpg", bgr_array])`` returns detections in original image pixels.
    """
    from .engine.inference.detectors import load_predictor

    return load_predictor(path, device, **options)


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
