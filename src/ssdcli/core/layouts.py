"""Anchor layouts as data: where and how large a model's default boxes are, and the built-in layouts by name.

No torch here, so that help texts and configuration can read layouts without importing it; ``core/anchors.py``
generates the boxes of a layout.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class AnchorLayout:
    """Where and how large the default boxes of a model are.

    Attributes:
        image_size: side of the square network input, in pixels.
        feature_maps: side of each square feature map, one per prediction layer.
        steps: pixels between neighbouring cell centres per layer; ``None`` puts centres at (j + 0.5) / f_k.
        sizes: box scales in pixels, one more than the layers: layer k uses sizes[k] and sizes[k + 1].
        aspect_ratios: per layer, every width/height ratio listed explicitly (e.g. ``(2, 0.5)``).
        clip: clamp widths and heights to at most 1 (torchvision's ``clip=True``); the reference does not.
    """

    image_size: int
    feature_maps: tuple[int, ...]
    steps: tuple[float, ...] | None
    sizes: tuple[float, ...]
    aspect_ratios: tuple[tuple[float, ...], ...]
    clip: bool = False

    def __post_init__(self) -> None:
        layers = len(self.feature_maps)
        if self.image_size <= 0 or layers == 0 or any(f <= 0 for f in self.feature_maps):
            raise ValueError(f"anchor layout: image_size and feature_maps must be positive, got {self}")
        if self.steps is not None and (len(self.steps) != layers or any(s <= 0 for s in self.steps)):
            raise ValueError(f"anchor layout: need {layers} positive steps, got {self.steps}")
        if len(self.sizes) != layers + 1 or any(s <= 0 for s in self.sizes):
            raise ValueError(f"anchor layout: need {layers + 1} positive sizes (one more than layers), got {self.sizes}")
        if len(self.aspect_ratios) != layers or any(r <= 0 for rs in self.aspect_ratios for r in rs):
            raise ValueError(f"anchor layout: need {layers} lists of positive aspect ratios, got {self.aspect_ratios}")

    @property
    def num_layers(self) -> int:
        return len(self.feature_maps)

    @property
    def boxes_per_cell(self) -> tuple[int, ...]:
        """Default boxes per feature-map cell, per layer (2 squares + one per aspect ratio)."""
        return tuple(2 + len(ratios) for ratios in self.aspect_ratios)

    @property
    def anchors_per_layer(self) -> tuple[int, ...]:
        return tuple(f * f * k for f, k in zip(self.feature_maps, self.boxes_per_cell))

    @property
    def num_anchors(self) -> int:
        return sum(self.anchors_per_layer)

    def scaled(self, image_size: int, feature_maps: tuple[int, ...]) -> AnchorLayout:
        """The same layout on an ``image_size`` input whose network gives ``feature_maps``: box sizes and steps
        keep their share of the side, aspect ratios stay. ``ValueError`` if the number of maps differs."""
        if len(feature_maps) != self.num_layers:
            raise ValueError(f"anchor layout: need {self.num_layers} feature maps, got {feature_maps}")
        ratio = image_size / self.image_size
        return AnchorLayout(
            image_size=image_size,
            feature_maps=tuple(feature_maps),
            steps=None if self.steps is None else tuple(s * ratio for s in self.steps),
            sizes=tuple(s * ratio for s in self.sizes),
            aspect_ratios=self.aspect_ratios,
            clip=self.clip,
        )

    def layer_index(self) -> Tensor:
        """[A] int64: the layer each default box belongs to."""
        # torch is imported here, not at the top, so that a layout stays readable without it.
        import torch

        counts = torch.tensor(self.anchors_per_layer)
        return torch.repeat_interleave(torch.arange(self.num_layers), counts)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["feature_maps"] = list(self.feature_maps)
        data["steps"] = None if self.steps is None else list(self.steps)
        data["sizes"] = list(self.sizes)
        data["aspect_ratios"] = [list(r) for r in self.aspect_ratios]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnchorLayout:
        """Build a layout from :meth:`to_dict` output (e.g. a JSON file); raises ``ValueError`` on bad content."""
        expected = {"image_size", "feature_maps", "steps", "sizes", "aspect_ratios", "clip"}
        unknown = set(data) - expected
        missing = expected - {"clip"} - set(data)
        if unknown or missing:
            raise ValueError(f"anchor layout: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
        try:
            return cls(
                image_size=int(data["image_size"]),
                feature_maps=tuple(int(f) for f in data["feature_maps"]),
                steps=None if data["steps"] is None else tuple(float(s) for s in data["steps"]),
                sizes=tuple(float(s) for s in data["sizes"]),
                aspect_ratios=tuple(tuple(float(r) for r in rs) for rs in data["aspect_ratios"]),
                clip=bool(data.get("clip", False)),
            )
        except (TypeError, ValueError) as error:
            raise ValueError(f"anchor layout: {error}") from error


def _scaled_sizes(image_size: int, fractions: list[float]) -> tuple[float, ...]:
    return tuple(f * image_size for f in fractions)


def _linear_scales(num_layers: int, min_ratio: float, max_ratio: float) -> list[float]:
    """torchvision's DefaultBoxGenerator scales: evenly spaced from min to max, then 1.0."""
    return [min_ratio + (max_ratio - min_ratio) * k / (num_layers - 1) for k in range(num_layers)] + [1.0]


# The built-in layouts. SSD300/SSD512 follow the paper's Caffe models; SSDLite320 follows torchvision's
# ssdlite320_mobilenet_v3_large (min_ratio 0.2, max_ratio 0.95, centres from the grid, clip=True).
BUILTIN_LAYOUTS: dict[str, AnchorLayout] = {
    "ssd300": AnchorLayout(
        image_size=300,
        feature_maps=(38, 19, 10, 5, 3, 1),
        steps=(8, 16, 32, 64, 100, 300),
        sizes=(21, 45, 99, 153, 207, 261, 315),
        aspect_ratios=((2, 0.5), (2, 0.5, 3, 1 / 3), (2, 0.5, 3, 1 / 3), (2, 0.5, 3, 1 / 3), (2, 0.5), (2, 0.5)),
    ),
    "ssd512": AnchorLayout(
        image_size=512,
        feature_maps=(64, 32, 16, 8, 4, 2, 1),
        steps=(8, 16, 32, 64, 128, 256, 512),
        sizes=(35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6),
        aspect_ratios=(
            (2, 0.5),
            (2, 0.5, 3, 1 / 3),
            (2, 0.5, 3, 1 / 3),
            (2, 0.5, 3, 1 / 3),
            (2, 0.5, 3, 1 / 3),
            (2, 0.5),
            (2, 0.5),
        ),
    ),
    "ssdlite320": AnchorLayout(
        image_size=320,
        feature_maps=(20, 10, 5, 3, 2, 1),
        steps=None,
        sizes=_scaled_sizes(320, _linear_scales(6, 0.2, 0.95)),
        aspect_ratios=tuple((2, 0.5, 3, 1 / 3) for _ in range(6)),
        clip=True,
    ),
}


def get_layout(name: str | AnchorLayout) -> AnchorLayout:
    """A built-in layout by name (or the layout itself); ``ValueError`` suggesting the closest name otherwise."""
    if isinstance(name, AnchorLayout):
        return name
    try:
        return BUILTIN_LAYOUTS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), BUILTIN_LAYOUTS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; choose from {', '.join(BUILTIN_LAYOUTS)}"
        raise ValueError(f"unknown anchor layout {name!r}{hint}") from None
