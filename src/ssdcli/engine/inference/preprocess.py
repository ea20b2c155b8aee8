"""Turning user images (paths, OpenCV BGR arrays, tensors) into the network's input, as evaluation does."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from ssdcli.core.layouts import AnchorLayout
from ssdcli.data.images import read_image_rgb, rgb_from_array
from ssdcli.errors import DataError

ImageLike = str | Path | np.ndarray | Tensor


def to_rgb_tensor(image: ImageLike) -> Tensor:
    """[3, H, W] uint8 RGB from a path (decoded by :func:`ssdcli.data.images.decode_image`), a numpy BGR array as
    OpenCV gives ([H, W, 3] or grayscale [H, W], uint8 or uint16: see :func:`ssdcli.data.images.rgb_from_array`),
    or a tensor ([3, H, W], uint8 or float in [0, 1], RGB)."""
    if isinstance(image, (str, Path)):
        return torch.from_numpy(read_image_rgb(image)).permute(2, 0, 1).contiguous()
    if isinstance(image, np.ndarray):
        return torch.from_numpy(rgb_from_array(image, "bgr")).permute(2, 0, 1).contiguous()
    if isinstance(image, Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise DataError(f"expected a [3, H, W] RGB tensor, got shape {tuple(image.shape)}")
        if image.is_floating_point():
            return (image.clamp(0, 1) * 255).round().to(torch.uint8)
        return image.to(torch.uint8)
    raise DataError(f"cannot read an image from a {type(image).__name__}")


class InputSpec(Protocol):
    """What preparing an image needs of a model: its input size (``layout.image_size``), normalisation and resize
    rule. A :class:`~ssdcli.models.spec.ModelSpec` and a :class:`~ssdcli.models.spec.ModelConfig` both are one."""

    @property
    def layout(self) -> AnchorLayout: ...

    @property
    def mean(self) -> tuple[float, float, float]: ...

    @property
    def std(self) -> tuple[float, float, float]: ...

    @property
    def resize(self) -> str: ...


def prepare(rgb: Tensor, spec: InputSpec) -> Tensor:
    """[3, H, W] uint8 RGB -> [3, S, S] float normalised, resized without letterboxing: the one way every command
    (``ssd eval``, ``ssd predict``, ``ssd benchmark``, training's validation, ``ssdcli.load``) feeds a model.

    ``spec.resize`` "antialias": the 8-bit image resized with antialiasing, as training does, then scaled to [0, 1]
    and normalised. "bilinear": as torchvision's detection transform, the same float operations in the same order:
    scaled to [0, 1] (divided by 255), normalised, then resized bilinearly without antialiasing
    (``align_corners=False``).
    """
    size, mean, std = spec.layout.image_size, list(spec.mean), list(spec.std)
    if spec.resize == "bilinear":
        normalised = TF.normalize(rgb.float() / 255.0, mean, std)  # [3, H, W]
        return F.interpolate(normalised[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    resized = TF.resize(rgb, [size, size], antialias=True)
    return TF.normalize(resized.float() / 255.0, mean, std)
