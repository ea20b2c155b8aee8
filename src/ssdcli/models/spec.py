"""A model apart from its weights: what every form of a trained model carries (checkpoints, exported files) and
what inference reads."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ssdcli.core.layouts import AnchorLayout
from ssdcli.core.postprocess import EVAL_SETTINGS, PostprocessSettings

from .config import ModelConfig


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
