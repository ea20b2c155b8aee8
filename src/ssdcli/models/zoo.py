"""The architectures ssdcli builds, one :class:`Architecture` entry each.

An entry holds everything that differs between architectures: the default anchor layout, the backbone, the kind
of head, the ImageNet weights the backbone can start from, the default learning rate per optimizer and a line of
description. ``ModelConfig`` (``models/spec.py``, whose ``arch`` names an entry), ``models/build.py``,
``models/weights.py``, ``models/pretrained.py``, the training schedule and the help of ``ssd train`` read it, so a
new architecture is one entry here (and, if it needs one, its backbone class in ``backbones.py``).

Importing this module does not import torch (``ssd train --help`` lists the entries): backbone classes are
imported when a backbone is built, and ImageNet weights are named as strings that torchvision resolves where
they are loaded (``models/weights.py``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING

from ssdcli.core.layouts import BUILTIN_LAYOUTS, AnchorLayout

if TYPE_CHECKING:
    from torch import nn

# ssd_tiny: 160x160 input, five feature maps with strides 8, 16, 32, 53.3 and 160 (centres from the grid).
# Box scales run from 10% to 90% of the image side so that objects of about 12-95% of the side have a default
# box with IoU > 0.5; the ratios mirror SSD300 (2:1 and 1:2 everywhere, also 3:1 and 1:3 on the middle maps).
SSD_TINY_LAYOUT = AnchorLayout(
    image_size=160,
    feature_maps=(20, 10, 5, 3, 1),
    steps=None,
    sizes=(16, 32, 56, 80, 112, 144),
    aspect_ratios=((2, 0.5), (2, 0.5, 3, 1 / 3), (2, 0.5, 3, 1 / 3), (2, 0.5), (2, 0.5)),
)

# ssd_tiny256: the same network on a 256x256 input, so its maps are 32, 16, 8, 4, 2 (strides 8 to 128). 1.6 times
# the resolution of ssd_tiny for small objects (blood platelets of 13-26 px, 5-10 % of the image side), and default
# box sizes from 7.5 % (19 px) to 90 % of the side: 19 px boxes on the 32x32 map, 38 px on the 16x16 map, etc.
SSD_TINY256_LAYOUT = AnchorLayout(
    image_size=256,
    feature_maps=(32, 16, 8, 4, 2),
    steps=None,
    sizes=(19, 38, 77, 128, 179, 230),
    aspect_ratios=((2, 0.5), (2, 0.5, 3, 1 / 3), (2, 0.5, 3, 1 / 3), (2, 0.5), (2, 0.5)),
)

#: Default learning rate per optimizer (the SSD paper's SGD rate and the usual AdamW one).
STANDARD_LR: Mapping[str, float] = MappingProxyType({"sgd": 0.01, "adamw": 0.001})

#: Models with BatchNorm after every convolution train from scratch at a higher rate.
BATCHNORM_LR: Mapping[str, float] = MappingProxyType({"sgd": 0.05, "adamw": 0.003})

# VGG16 backbones start from torchvision's classifier weights (normalisation as every torchvision classifier) or
# the SSD-specific features converted from the paper's Caffe model that torchvision's ssd300_vgg16 uses (Caffe
# normalisation: mean (0.48235, 0.45882, 0.40784), std 1/255).
_VGG16_IMAGENET = ("VGG16_Weights.IMAGENET1K_V1", "VGG16_Weights.IMAGENET1K_FEATURES")


def _vgg16_backbone(highres: bool) -> nn.Module:
    """A randomly initialised VGG16 backbone (``highres``: SSD512's extra layers)."""
    from .backbones import VGG16Backbone

    return VGG16Backbone(highres=highres)


def _mobilenet_v3_backbone(reduced_tail: bool = True) -> nn.Module:
    """A randomly initialised MobileNetV3-Large backbone (``reduced_tail`` defaults as in its class)."""
    from .backbones import MobileNetV3Backbone

    return MobileNetV3Backbone(reduced_tail=reduced_tail)


def _tiny_backbone() -> nn.Module:
    """A randomly initialised tiny BatchNorm backbone."""
    from .backbones import TinyBackbone

    return TinyBackbone()


def _tiny_feature_maps(image_size: int) -> tuple[int, ...]:
    """Sides of the tiny backbone's five maps on an ``image_size`` input: each 3x3 stride-2 convolution (padding 1)
    halves the side rounding up (three before the first map, one before each of the next three), and the last
    3x3 convolution, unpadded, takes 2 off."""
    sides, side = [], image_size
    for halvings in (3, 1, 1, 1):
        for _ in range(halvings):
            side = -(-side // 2)
        sides.append(side)
    return (*sides, sides[-1] - 2)


#: Input sizes at which a scalable architecture (``Architecture.feature_maps_at``) is built: multiples of this step
#: (the network's strides stay whole) within these bounds.
SIZE_STEP = 32
MIN_SCALED_SIZE = 160
MAX_SCALED_SIZE = 1024


@dataclass(frozen=True)
class Architecture:
    """One SSD architecture.

    Attributes:
        name: the ``arch`` of a :class:`~ssdcli.models.spec.ModelConfig`.
        description: a few words for help texts (no parentheses: help lists it in some).
        layout: the default anchor layout.
        backbone_kind: the family of the backbone: ``"vgg16"``, ``"mobilenet_v3_large"`` or ``"tiny"``.
        backbone: makes the randomly initialised backbone (importing its class when called); MobileNetV3 ones
            take ``reduced_tail``.
        separable_head: SSDLite's depthwise-separable predictors instead of 3x3 convolutions.
        imagenet_weights: names of torchvision ImageNet weights the backbone can start from, as
            ``torchvision.models.get_weight`` reads them (e.g. ``"VGG16_Weights.IMAGENET1K_V1"``); the first whose
            input normalisation equals the model's mean/std is used, else the first. Empty: none exist.
        learning_rates: default base learning rate per optimizer.
        feature_maps_at: the sides of the network's feature maps on another input size, for an architecture that
            runs at any multiple of :data:`SIZE_STEP` (its layout scaled, :meth:`layout_at`); None: its layout's
            size only.
    """

    name: str
    description: str
    layout: AnchorLayout
    backbone_kind: str
    backbone: Callable[..., nn.Module]
    learning_rates: Mapping[str, float]
    separable_head: bool = False
    imagenet_weights: tuple[str, ...] = ()
    feature_maps_at: Callable[[int], tuple[int, ...]] | None = None

    def layout_at(self, image_size: int | None) -> AnchorLayout:
        """The default layout on an ``image_size`` input (None: its own size): box sizes keep their share of the
        side. ``ValueError`` naming the sizes allowed for a size the architecture does not take."""
        if image_size is None or image_size == self.layout.image_size:
            return self.layout
        if self.feature_maps_at is None:
            raise ValueError(f"the layout of {self.name} is for {self.layout.image_size} px inputs")
        if image_size % SIZE_STEP or not MIN_SCALED_SIZE <= image_size <= MAX_SCALED_SIZE:
            raise ValueError(
                f"{self.name} takes inputs of {MIN_SCALED_SIZE} to {MAX_SCALED_SIZE} px in steps of {SIZE_STEP}"
            )
        return self.layout.scaled(image_size, self.feature_maps_at(image_size))

    @property
    def has_reduced_tail(self) -> bool:
        """Whether ``ModelConfig.reduced_tail`` applies (MobileNetV3 backbones)."""
        return self.backbone_kind == "mobilenet_v3_large"

    def build_backbone(self, reduced_tail: bool | None = None) -> nn.Module:
        """The randomly initialised backbone (``reduced_tail`` is read by MobileNetV3 backbones only)."""
        if self.has_reduced_tail:
            return self.backbone(reduced_tail=bool(reduced_tail))
        return self.backbone()


_ENTRIES = (
    Architecture(
        name="ssd300_vgg16",
        description="SSD300 on VGG16 as in the SSD paper",
        layout=BUILTIN_LAYOUTS["ssd300"],
        backbone_kind="vgg16",
        backbone=partial(_vgg16_backbone, highres=False),
        imagenet_weights=_VGG16_IMAGENET,
        learning_rates=STANDARD_LR,
    ),
    Architecture(
        name="ssd512_vgg16",
        description="SSD512 on VGG16 as in the SSD paper",
        layout=BUILTIN_LAYOUTS["ssd512"],
        backbone_kind="vgg16",
        backbone=partial(_vgg16_backbone, highres=True),
        imagenet_weights=_VGG16_IMAGENET,
        learning_rates=STANDARD_LR,
    ),
    Architecture(
        name="ssdlite320_mobilenet_v3_large",
        description="torchvision's SSDLite320 on MobileNetV3-Large",
        layout=BUILTIN_LAYOUTS["ssdlite320"],
        backbone_kind="mobilenet_v3_large",
        backbone=_mobilenet_v3_backbone,
        separable_head=True,
        imagenet_weights=("MobileNet_V3_Large_Weights.IMAGENET1K_V1",),
        learning_rates=STANDARD_LR,
    ),
    Architecture(
        name="ssd_tiny",
        description="a small BatchNorm network at 160x160",
        layout=SSD_TINY_LAYOUT,
        backbone_kind="tiny",
        backbone=_tiny_backbone,
        learning_rates=BATCHNORM_LR,
        feature_maps_at=_tiny_feature_maps,
    ),
    Architecture(
        name="ssd_tiny256",
        description="ssd_tiny at 256x256 for small objects",
        layout=SSD_TINY256_LAYOUT,
        backbone_kind="tiny",
        backbone=_tiny_backbone,
        learning_rates=BATCHNORM_LR,
        feature_maps_at=_tiny_feature_maps,
    ),
)

#: Architecture name -> its entry, in the order above.
ARCHITECTURES: Mapping[str, Architecture] = MappingProxyType({entry.name: entry for entry in _ENTRIES})


def check_arch(arch: str) -> str:
    """``arch`` if it names an entry; ``ValueError`` suggesting the closest name otherwise."""
    if arch in ARCHITECTURES:
        return arch
    containing = [name for name in ARCHITECTURES if str(arch) and str(arch).lower() in name]  # "ssdlite", "tiny"
    close = containing or difflib.get_close_matches(str(arch), ARCHITECTURES, n=1, cutoff=0.4)
    if len(close) == 1:
        hint = f"; did you mean {close[0]!r}?"
    else:
        hint = f"; choose from {', '.join(close or ARCHITECTURES)}"
    raise ValueError(f"unknown model architecture {arch!r}{hint}")


def default_lr(arch: str, optimizer: str) -> float:
    """The base learning rate of ``optimizer`` for ``arch``: its entry's, else the standard one (0.01 for an
    optimizer without a standard rate)."""
    entry = ARCHITECTURES.get(arch)
    rates = entry.learning_rates if entry is not None else STANDARD_LR
    return rates.get(optimizer, STANDARD_LR.get(optimizer, 0.01))
