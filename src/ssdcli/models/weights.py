"""Backbone weights: torchvision's ImageNet files from the local torch hub cache (downloaded into it only on request,
by ``models/hub.py``) or a local file.

Accepted local files (PyTorch state dicts, read with ``torch.load(weights_only=True)``):

- the state dict of the backbone itself (``model.backbone.state_dict()``);
- the state dict of a whole SSD model (its ``backbone.*`` entries are used), also inside a ``{"model": ...}`` or
  ``{"state_dict": ...}`` checkpoint;
- a torchvision ImageNet classifier file (``features.*`` entries; the classifier is ignored), e.g.
  ``vgg16-397923af.pth`` or ``mobilenet_v3_large-8738ca79.pth``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision.models import WeightsEnum, get_weight

from ssdcli.config import IMAGENET_MEAN, IMAGENET_STD
from ssdcli.errors import CheckpointError, UsageError

from .spec import ModelConfig
from .zoo import ARCHITECTURES

IMAGENET = "imagenet"


def _normalisation(weights: WeightsEnum) -> tuple[tuple[float, ...], tuple[float, ...]]:
    keywords = getattr(weights.transforms, "keywords", {})
    return tuple(keywords.get("mean", IMAGENET_MEAN)), tuple(keywords.get("std", IMAGENET_STD))


def _same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-3, abs_tol=1e-6) for x, y in zip(a, b))


def _candidates(arch: str) -> tuple[WeightsEnum, ...]:
    """The torchvision weights enums named by the architecture's ``imagenet_weights`` (``models/zoo.py``)."""
    return tuple(get_weight(name) for name in ARCHITECTURES[arch].imagenet_weights)


def imagenet_weights(config: ModelConfig) -> WeightsEnum:
    """The torchvision weights enum that ``backbone_weights="imagenet"`` loads for ``config``.

    The first of the architecture's ``imagenet_weights`` (``models/zoo.py``) whose input normalisation equals the
    model's mean/std, else the first.
    """
    candidates = _candidates(config.arch)
    if not candidates:
        raise UsageError(
            f"{config.arch} has no ImageNet weights; train it from scratch (no backbone weights) "
            "or give a state dict file"
        )
    for weights in candidates:
        mean, std = _normalisation(weights)
        if _same(mean, config.mean) and _same(std, config.std):
            return weights
    return candidates[0]


def hub_cache_file(weights: WeightsEnum) -> Path:
    """Where torchvision keeps ``weights``: <torch.hub.get_dir()>/checkpoints/<file name of the URL>."""
    url: str = weights.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _imagenet_file(config: ModelConfig) -> Path:
    weights = imagenet_weights(config)
    path = hub_cache_file(weights)
    if path.is_file():
        return path
    name = f"{type(weights).__name__}.{weights.name}"
    others = [w for w in _candidates(config.arch) if w is not weights]
    hint = "".join(
        f"; {hub_cache_file(w).name} is used instead when the model's mean/std are {_normalisation(w)[0]} / "
        f"{tuple(round(s, 5) for s in _normalisation(w)[1])}"
        for w in others
    )
    raise CheckpointError(
        f"ImageNet weights for {config.arch} ({name}) are not in the torch hub cache (never downloaded unless "
        f"asked): fetch them with ssd weights fetch {name}, or put the file from {weights.url} here, or pass its "
        f"path as the backbone weights{hint}",
        path=path,
    )


def is_state_dict(obj: object) -> bool:
    """Whether ``obj`` is a non-empty mapping of parameter names to tensors."""
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


def read_state_dict(path: str | Path, what: str = "backbone weights file") -> dict[str, Tensor]:
    """The state dict in ``path`` (unwrapping ``{"model": ...}`` / ``{"state_dict": ...}``); CheckpointError if none.

    ``what`` names the file in the message when it does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found", path=path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch.load raises many kinds (pickle, zip, runtime) for a bad file
        # torch's own text is several sentences (and for a foreign pickle suggests loading it unsafely): name the
        # kind of failure only.
        raise CheckpointError(
            f"not a readable PyTorch state dict: corrupt, or not a weights file ({type(error).__name__})", path=path
        ) from None
    if not is_state_dict(obj) and isinstance(obj, Mapping):
        obj = next((obj[k] for k in ("model", "state_dict") if is_state_dict(obj.get(k))), obj)
    if not is_state_dict(obj):
        raise CheckpointError(
            f"does not hold a state dict (a mapping of parameter names to tensors), got {type(obj).__name__}",
            path=path,
        )
    return dict(obj)


def _examples(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")


def fit_state_dict(target: nn.Module, state: dict[str, Tensor], path: Path, what: str) -> None:
    """Load ``state`` into ``target`` if every key and shape fits (BatchNorm counters may be absent)."""
    expected = target.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or reshaped:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing ({_examples(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected ({_examples(unexpected)})")
        if reshaped:
            k = reshaped[0]
            problems.append(
                f"{len(reshaped)} with other shapes (e.g. {k}: file {list(state[k].shape)}, "
                f"model {list(expected[k].shape)})"
            )
        raise CheckpointError(f"does not fit {what}: " + "; ".join(problems), path=path)
    target.load_state_dict(state, strict=False)


def load_backbone_weights(backbone: nn.Module, source: str | Path, config: ModelConfig) -> Path:
    """Load ``source`` ("imagenet" or a state dict file, see the module docstring) into ``backbone``.

    Returns the file that was read. Raises CheckpointError naming the file when it is missing, unreadable or made
    for another model, UsageError when the architecture has no ImageNet weights.
    """
    path = _imagenet_file(config) if str(source) == IMAGENET else Path(source)
    state = read_state_dict(path)
    what = f"the {config.arch} backbone"
    if config.reduced_tail:
        what += " (MobileNetV3 with reduced tail)"
    elif config.reduced_tail is False:
        what += " (MobileNetV3 with full tail)"
    if any(k.startswith("backbone.") for k in state):
        own = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
        fit_state_dict(backbone, own, path, what)
    elif hasattr(backbone, "trunk") and any(k.startswith("features.") for k in state):
        trunk_state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        trunk = backbone.get_submodule("trunk")
        fit_state_dict(trunk, trunk_state, path, what + " as a torchvision ImageNet classifier file")
    else:
        fit_state_dict(backbone, state, path, what)
    return path
