"""torchvision's weights that ssdcli models start from, and their download into the torch hub cache on request.

Two kinds are known: the ImageNet classifiers the zoo's backbones start from (``imagenet_weights`` of
``models/zoo.py``, loaded by ``models/weights.py``) and the COCO SSD detectors of ``models/pretrained.py``. Every one
lives at ``<torch.hub.get_dir()>/checkpoints/<file name of its URL>``, where loading reads it. Nothing here touches
the network unless :func:`fetch` is called: it downloads through torchvision's own weight API
(``WeightsEnum.get_state_dict(check_hash=True)``), which checks the file against the SHA-256 prefix published in
its file name (``vgg16-397923af.pth``) before it is moved into place.
"""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from urllib.error import URLError

from torchvision.models import WeightsEnum, get_weight

from ssdcli.errors import CheckpointError, UsageError

from .pretrained import TORCHVISION_DETECTORS
from .weights import hub_cache_file
from .zoo import ARCHITECTURES

BACKBONE = "backbone"
DETECTOR = "COCO detector"
#: What ``names`` of :func:`find_weights` take for every known entry.
ALL = "all"
#: Failures that mean the URL could not be reached or read (no network, DNS, refused, timed out, HTTP errors).
NETWORK_ERRORS: tuple[type[Exception], ...] = (URLError, ConnectionError, TimeoutError, socket.gaierror, HTTPException)
#: The start of torch.hub's message for a download whose SHA-256 does not start with its file name's prefix.
_HASH_MISMATCH = "invalid hash value"


def weights_name(weights: WeightsEnum) -> str:
    """The name the command line takes, e.g. ``VGG16_Weights.IMAGENET1K_V1``."""
    return f"{type(weights).__name__}.{weights.name}"


@dataclass(frozen=True)
class KnownWeights:
    """One of torchvision's weight files: its name, kind, the ssdcli architectures that use it and its entry."""

    name: str
    kind: str
    archs: tuple[str, ...]
    weights: WeightsEnum

    @property
    def url(self) -> str:
        """Where torchvision publishes the file."""
        return str(self.weights.url)

    @property
    def path(self) -> Path:
        """The file in the torch hub cache (``<torch.hub.get_dir()>/checkpoints/<file name>``)."""
        return hub_cache_file(self.weights)

    @property
    def size_mb(self) -> float | None:
        """The file's size in MB as torchvision's metadata gives it, or None where it does not."""
        size = self.weights.meta.get("_file_size")
        return float(size) if isinstance(size, (int, float)) else None

    @property
    def cached(self) -> bool:
        """Whether the file is in the torch hub cache."""
        return self.path.is_file()


@dataclass(frozen=True)
class Fetched:
    """What :func:`fetch` did: the cache file, and whether it was downloaded (False: it was there already)."""

    entry: KnownWeights
    path: Path
    downloaded: bool


def _backbone_entries() -> list[KnownWeights]:
    users: dict[str, list[str]] = {}
    enums: dict[str, WeightsEnum] = {}
    for arch in ARCHITECTURES.values():
        for written in arch.imagenet_weights:
            weights = get_weight(written)
            name = weights_name(weights)
            enums[name] = weights
            users.setdefault(name, []).append(arch.name)
    return [KnownWeights(name, BACKBONE, tuple(users[name]), weights) for name, weights in enums.items()]


def known_weights() -> tuple[KnownWeights, ...]:
    """Every weight file ssdcli can start from: the ImageNet backbones of the zoo, then the COCO detectors."""
    detectors = [KnownWeights(d.name, DETECTOR, (d.arch,), d.weights) for d in TORCHVISION_DETECTORS.values()]
    return (*_backbone_entries(), *detectors)


def find_weights(names: Sequence[str]) -> tuple[KnownWeights, ...]:
    """The known entries named by ``names`` (case-insensitive; ``"all"``: every one), in order, each once.

    UsageError naming the known ones for a name that is none of them, or for no name at all.
    """
    known = known_weights()
    by_name = {entry.name.lower(): entry for entry in known}
    if not names:
        raise UsageError(f"name the weights to fetch, or {ALL!r}; known: {', '.join(e.name for e in known)}")
    if any(name.lower() == ALL for name in names):
        return known
    unknown = [name for name in names if name.lower() not in by_name]
    if unknown:
        raise UsageError(
            f"unknown weights {', '.join(unknown)}; known: {', '.join(e.name for e in known)} (or {ALL!r})"
        )
    return tuple(dict.fromkeys(by_name[name.lower()] for name in names))


def _reason(error: Exception) -> str:
    reason = getattr(error, "reason", None) or error
    return " ".join(str(reason).split()) or type(error).__name__


def progress_bar_available() -> bool:
    """Whether torch.hub draws a progress bar (tqdm installed, the ``download`` extra). Without tqdm it writes bare
    percentages and leaves the line open, so they are not asked for."""
    return importlib.util.find_spec("tqdm") is not None


def fetch(entry: KnownWeights, progress: bool = True) -> Fetched:
    """Download ``entry`` into the torch hub cache unless it is there; ``progress``: torch.hub's progress bar on
    stderr (where tqdm is installed).

    The file is checked against the SHA-256 prefix in its name before it is kept. Raises CheckpointError naming the
    cache file: the URL could not be reached (the message names the URL, to put the file there by hand), or the
    download does not match its checksum (nothing kept).
    """
    path = entry.path
    if path.is_file():
        return Fetched(entry, path, downloaded=False)
    try:
        entry.weights.get_state_dict(progress=progress and progress_bar_available(), check_hash=True)
    except NETWORK_ERRORS as error:
        raise CheckpointError(
            f"could not download {entry.name} from {entry.url} ({_reason(error)}); without a network, download that "
            "file elsewhere and put it here",
            path=path,
        ) from None
    except RuntimeError as error:
        if not str(error).startswith(_HASH_MISMATCH):
            raise
        raise CheckpointError(
            f"the download of {entry.name} from {entry.url} does not match its published SHA-256 prefix "
            f"({' '.join(str(error).split())}); nothing kept, fetch it again",
            path=path,
        ) from None
    return Fetched(entry, path, downloaded=True)


__all__ = [
    "ALL",
    "BACKBONE",
    "DETECTOR",
    "Fetched",
    "KnownWeights",
    "fetch",
    "find_weights",
    "known_weights",
    "progress_bar_available",
    "weights_name",
]
