"""`ssd weights`: torchvision's weights that ssdcli starts from, listed and downloaded into the torch hub cache on
request (``ssd weights fetch``, ``ssd train --download``). Nothing downloads unless one of these is called."""

from __future__ import annotations

from collections.abc import Sequence

from ssdcli.config import ModelSettings
from ssdcli.errors import UsageError
from ssdcli.models.hub import Fetched, KnownWeights, fetch, find_weights, known_weights, weights_name
from ssdcli.models.pretrained import detector_by_name
from ssdcli.models.spec import default_config
from ssdcli.models.weights import IMAGENET, imagenet_weights


def list_weights() -> tuple[KnownWeights, ...]:
    """Every weight file ssdcli can start from, ImageNet backbones first, then COCO detectors."""
    return known_weights()


def fetch_weights(names: Sequence[str], progress: bool = True) -> list[Fetched]:
    """Download the weights named by ``names`` (or ``"all"``) that the torch hub cache lacks, in order.

    Every name is checked before the first download. torch.hub writes a line on stdout before each download;
    ``progress``: its progress bar on stderr too.
    """
    return [fetch(entry, progress) for entry in find_weights(names)]


def training_weights(settings: ModelSettings) -> list[str]:
    """The torchvision weights a run of ``settings`` reads from the torch hub cache: the COCO detector named by
    ``weights``, the ImageNet backbone of ``arch`` for ``backbone_weights`` "imagenet"; UsageError when none."""
    names = []
    detector = detector_by_name(settings.weights) if settings.weights is not None else None
    if detector is not None:
        names.append(detector.name)
    if settings.backbone_weights == IMAGENET:
        try:
            config = default_config(settings.arch, num_classes=2)
        except ValueError as error:
            raise UsageError(f"`arch`: {error}") from None
        names.append(weights_name(imagenet_weights(config)))
    if not names:
        raise UsageError(
            "`download` fetches the torchvision weights that `weights` (a COCO detector's name) or "
            f"`backbone_weights` ({IMAGENET!r}) name; neither names any"
        )
    return names


def fetch_for_training(settings: ModelSettings, progress: bool = True) -> list[Fetched]:
    """Download what :func:`training_weights` names unless the torch hub cache holds it already."""
    return fetch_weights(training_weights(settings), progress)


__all__ = [
    "Fetched",
    "KnownWeights",
    "fetch_for_training",
    "fetch_weights",
    "list_weights",
    "training_weights",
]
