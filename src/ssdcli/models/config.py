"""What defines an SSD model: architecture name, classes, anchor layout and input normalisation (all data).

The architectures themselves are the entries of ``models/zoo.py``; :data:`ARCHS`, :data:`TINY_ARCHS` and
:data:`MOBILENET_ARCHS` are views of them.

A :class:`ModelConfig` is all that is needed to rebuild a model's modules (``build_model``), so checkpoints store
``model.config.to_dict()`` next to the weights.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ssdcli.core.layouts import AnchorLayout

from .zoo import ARCHITECTURES
from .zoo import SSD_TINY256_LAYOUT as SSD_TINY256_LAYOUT  # the layouts were defined here first
from .zoo import SSD_TINY_LAYOUT as SSD_TINY_LAYOUT

#: Input normalisation of torchvision's ImageNet classifiers, for RGB images scaled to [0, 1].
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Architecture name -> its default anchor layout (from :data:`~ssdcli.models.zoo.ARCHITECTURES`).
ARCHS: Mapping[str, AnchorLayout] = MappingProxyType({name: entry.layout for name, entry in ARCHITECTURES.items()})

#: How images are resized to the network input: "antialias": the 8-bit image, antialiased (ssdcli's pipeline,
#: training included); "bilinear": the normalised float image, bilinear without antialiasing (torchvision's
#: detection transform, which its COCO detectors were trained and evaluated with).
RESIZE_MODES = ("antialias", "bilinear")

#: Architectures built on :class:`~ssdcli.models.backbones.TinyBackbone` (BatchNorm everywhere).
TINY_ARCHS = frozenset(name for name, entry in ARCHITECTURES.items() if entry.backbone_kind == "tiny")

#: Architectures with a MobileNetV3 backbone, the only ones where ``ModelConfig.reduced_tail`` applies.
MOBILENET_ARCHS = frozenset(name for name, entry in ARCHITECTURES.items() if entry.has_reduced_tail)


def check_arch(arch: str) -> str:
    """``arch`` if it is a known architecture; ``ValueError`` suggesting the closest name otherwise."""
    if arch in ARCHS:
        return arch
    containing = [name for name in ARCHS if str(arch) and str(arch).lower() in name]  # "ssdlite", "tiny"
    close = containing or difflib.get_close_matches(str(arch), ARCHS, n=1, cutoff=0.4)
    if len(close) == 1:
        hint = f"; did you mean {close[0]!r}?"
    else:
        hint = f"; choose from {', '.join(close or ARCHS)}"
    raise ValueError(f"unknown model architecture {arch!r}{hint}")


def _triple(name: str, values: Any) -> tuple[float, float, float]:
    try:
        triple = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"model config: {name} must be 3 numbers (R, G, B), got {values!r}") from None
    if len(triple) != 3:
        raise ValueError(f"model config: {name} must be 3 numbers (R, G, B), got {values!r}")
    return triple


@dataclass(frozen=True)
class ModelConfig:
    """An SSD model as data.

    Attributes:
        arch: one of :data:`ARCHS`.
        num_classes: number of classes including the background (class 0).
        layout: the anchor layout; the heads are built from ``layout.boxes_per_cell`` and the backbone's feature
            maps must have the sizes ``layout.feature_maps`` at ``layout.image_size``.
        mean, std: input normalisation of RGB images scaled to [0, 1]: ``(image - mean) / std``, done by the data
            pipeline before the model.
        reduced_tail: MobileNetV3 only: halve the channels of the last stage (MobileNetV3 paper, Table 6).
            ``None`` decides as torchvision does: reduced unless backbone weights are loaded. ``build_model``
            resolves it, so ``model.config`` always holds ``True`` or ``False`` there.
        resize: how inference resizes images to the input size, one of :data:`RESIZE_MODES`.
    """

    arch: str
    num_classes: int
    layout: AnchorLayout
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    reduced_tail: bool | None = None
    resize: str = "antialias"

    def __post_init__(self) -> None:
        check_arch(self.arch)
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(
                f"model config: num_classes counts the background too and must be an integer >= 2, "
                f"got {self.num_classes!r}"
            )
        if not isinstance(self.layout, AnchorLayout):
            raise ValueError(f"model config: layout must be an AnchorLayout, got {type(self.layout).__name__}")
        object.__setattr__(self, "mean", _triple("mean", self.mean))
        object.__setattr__(self, "std", _triple("std", self.std))
        if any(s <= 0 for s in self.std):
            raise ValueError(f"model config: std must be positive, got {self.std}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"model config: resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")
        if self.reduced_tail is not None and self.arch not in MOBILENET_ARCHS:
            raise ValueError(f"model config: reduced_tail applies to MobileNetV3 models only, not {self.arch!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, as stored in checkpoints."""
        return {
            "arch": self.arch,
            "num_classes": self.num_classes,
            "layout": self.layout.to_dict(),
            "mean": list(self.mean),
            "std": list(self.std),
            "reduced_tail": self.reduced_tail,
            "resize": self.resize,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; ``ValueError`` naming the problem on bad content."""
        if not isinstance(data, dict):
            raise ValueError(f"model config: expected a mapping, got {type(data).__name__}")
        required = {"arch", "num_classes", "layout"}
        unknown = set(data) - required - {"mean", "std", "reduced_tail", "resize"}
        missing = required - set(data)
        if unknown or missing:
            raise ValueError(f"model config: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
        if not isinstance(data["layout"], dict):
            raise ValueError(f"model config: layout must be a mapping, got {type(data['layout']).__name__}")
        reduced_tail = data.get("reduced_tail")
        if reduced_tail is not None and not isinstance(reduced_tail, bool):
            raise ValueError(f"model config: reduced_tail must be true, false or null, got {reduced_tail!r}")
        return cls(
            arch=str(data["arch"]),
            num_classes=data["num_classes"],
            layout=AnchorLayout.from_dict(data["layout"]),
            mean=data.get("mean", IMAGENET_MEAN),
            std=data.get("std", IMAGENET_STD),
            reduced_tail=reduced_tail,
            resize=str(data.get("resize", "antialias")),
        )


def default_config(arch: str, num_classes: int, layout: AnchorLayout | None = None) -> ModelConfig:
    """The configuration of ``arch`` with ``num_classes`` classes (background included) and its default layout.

    ``ValueError`` suggesting the closest name for an unknown ``arch``.
    """
    layout = ARCHS[check_arch(arch)] if layout is None else layout
    return ModelConfig(arch=arch, num_classes=num_classes, layout=layout)
