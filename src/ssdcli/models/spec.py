"""A model apart from its weights, in two parts: :class:`ModelConfig`, the network (an architecture of
``models/zoo.py`` with its class count, default boxes and input normalisation), all that ``build_model`` needs; and
:class:`ModelSpec`, the config with the class names, category ids and detection settings, what every form of a
trained model carries (checkpoints, exported files) and what inference reads. ``ModelSpec.to_dict()`` is the
stored form."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ssdcli.config import DEFAULT_RESIZE, IMAGENET_MEAN, IMAGENET_STD, RESIZE_MODES
from ssdcli.core.layouts import AnchorLayout
from ssdcli.core.postprocess import EVAL_SETTINGS, PostprocessSettings

from .zoo import ARCHITECTURES, check_arch


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
        arch: the name of an entry of :data:`~ssdcli.models.zoo.ARCHITECTURES`.
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
    resize: str = DEFAULT_RESIZE

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
        if self.reduced_tail is not None and not ARCHITECTURES[self.arch].has_reduced_tail:
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
            resize=str(data.get("resize", DEFAULT_RESIZE)),
        )


def default_layout(arch: str, image_size: int | None = None) -> AnchorLayout:
    """The default layout of ``arch`` on an ``image_size`` input (None: the architecture's own size; another size
    for the architectures that scale, the ``ssd_tiny`` family). ``ValueError`` for an unknown ``arch`` or a size
    it does not take."""
    return ARCHITECTURES[check_arch(arch)].layout_at(image_size)


def default_config(arch: str, num_classes: int, layout: AnchorLayout | None = None) -> ModelConfig:
    """The configuration of ``arch`` with ``num_classes`` classes (background included) and its default layout.

    ``ValueError`` suggesting the closest name for an unknown ``arch``.
    """
    layout = ARCHITECTURES[check_arch(arch)].layout if layout is None else layout
    return ModelConfig(arch=arch, num_classes=num_classes, layout=layout)


@dataclass(frozen=True)
class ModelSpec:
    """The model's configuration (architecture, default boxes, input normalisation), its class names (index 0 the
    background), the data set's category id of each label, and the detection settings it is evaluated with
    (ssdcli's for its own checkpoints, torchvision's for its detectors). ``to_dict()`` is the form stored in
    checkpoints and in the metadata of exported files. ValueError when the class names, the category ids and the
    config's class count disagree."""

    config: ModelConfig
    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]
    postprocess: PostprocessSettings = EVAL_SETTINGS

    def __post_init__(self) -> None:
        if len(self.category_ids) != len(self.class_names):
            raise ValueError(f"{len(self.class_names)} class names but {len(self.category_ids)} category ids")
        if len(self.class_names) != self.config.num_classes:
            raise ValueError(
                f"{len(self.class_names)} class names for a model with {self.config.num_classes} classes"
            )

    @property
    def arch(self) -> str:
        return self.config.arch

    @property
    def layout(self) -> AnchorLayout:
        return self.config.layout

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.config.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.config.std

    @property
    def resize(self) -> str:
        return self.config.resize

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_config": self.config.to_dict(),
            "class_names": list(self.class_names),
            "category_ids": list(self.category_ids),
            "postprocess": dataclasses.asdict(self.postprocess),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """The inverse of :meth:`to_dict` (``postprocess`` may be missing: ssdcli's settings); ValueError, KeyError
        or TypeError when ``data`` is not a model's."""
        class_names = tuple(str(name) for name in data["class_names"])
        category_ids = tuple(int(i) for i in data["category_ids"])
        postprocess = PostprocessSettings(**data.get("postprocess", {}))
        return cls(ModelConfig.from_dict(data["model_config"]), class_names, category_ids, postprocess)
