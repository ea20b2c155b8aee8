"""The architectures ``train`` can build, as help texts show them: names, descriptions and default learning rates.

Reads ``models/zoo.py`` only, which imports no torch, so that ``ssd train --help`` answers at once.
"""

from __future__ import annotations

from ssdcli.models.zoo import ARCHITECTURES, STANDARD_LR, default_lr


def architecture_descriptions() -> dict[str, str]:
    """Architecture name -> its one-line description, in the order of ``models/zoo.py``."""
    return {name: entry.description for name, entry in ARCHITECTURES.items()}


def default_learning_rates() -> dict[str, dict[str, float]]:
    """Architecture name -> optimizer -> the base learning rate ``train`` uses when none is given."""
    return {name: {optimizer: default_lr(name, optimizer) for optimizer in STANDARD_LR} for name in ARCHITECTURES}


def standard_learning_rates() -> dict[str, float]:
    """Optimizer -> its default learning rate for architectures without their own."""
    return dict(STANDARD_LR)
