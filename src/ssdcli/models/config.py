"""What defines an SSD model: architecture name, classes, anchor layout and input normalisation (all data).

A :class:`ModelConfig` is all that is needed to rebuild a model's modules (``build_model``), so checkpoints store
``model.config.to_dict()`` next to the weights.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from ssdcli.core.anchors import BUILTIN_LAYOUTS, AnchorLayout

#: Input normalisation of torchvision's ImageNet classifiers, for RGB images scaled to [0, 1].
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

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

#: Architecture name -> its default anchor layout.
ARCHS: dict[str, AnchorLayout] = {
    "ssd300_vgg16": BUILTIN_LAYOUTS["ssd300"],
    "ssd512_vgg16": BUILTIN_LAYOUTS["ssd512"],
    "ssdlite320_mobilenet_v3_large": BUILTIN_LAYOUTS["ssdlite320"],
    "ssd_tiny": SSD_TINY_LAYOUT,
    "ssd_tiny256": SSD_TINY256_LAYOUT,
}

#: How images are resized to the network input: "antialias": the 8-bit image, antialiased (ssdcli's pipeline,
#: training included); "bilinear": the normalised float image, bilinear without antialiasing (torchvision's
#: detection transform, which its COCO detectors were trained and evaluated with).
RESIZE_MODES = ("antialias", "bilinear")

#: Architectures built on :class:`~ssdcli.models.backbones.TinyBackbone` (BatchNorm everywhere).
TINY_ARCHS = frozenset({"ssd_tiny", "ssd_tiny256"})

#: Architectures with a MobileNetV3 backbone, the only ones where ``ModelConfig.reduced_tail`` applies.
MOBILENET_ARCHS = frozenset({"ssdlite320_mobilenet_v3_large"})


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
    return triple  # type: ignore[return-value]


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
