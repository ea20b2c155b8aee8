"""Learning-rate schedule and optimizer construction."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ssdcli.errors import UsageError
from ssdcli.models.zoo import STANDARD_LR

#: The optimizers and their default learning rate for an architecture without its own.
DEFAULT_LR = STANDARD_LR


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, final_fraction: float = 0.01) -> float:
    """Multiplier of the base lr at ``step``: linear warm-up from 10 % over ``warmup_steps``, then cosine decay
    to ``final_fraction`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return 0.1 + 0.9 * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))


def check_optimizer(name: str) -> str:
    """``name`` if it is a known optimizer; UsageError listing the known ones otherwise."""
    if name not in DEFAULT_LR:
        raise UsageError(f"unknown optimizer {name!r} (choose from {', '.join(DEFAULT_LR)})")
    return name


@dataclass
class WarmupCosine:
    """:func:`warmup_cosine` as a ``LambdaLR`` multiplier whose ``total_steps`` may be re-fitted during training
    (``ssd train --time``); the warm-up is at most a quarter of the schedule. ``LambdaLR.state_dict`` saves the
    fields, so a resumed run continues the fitted schedule."""

    total_steps: int
    warmup_steps: int

    def __call__(self, step: int) -> float:
        warmup = min(self.warmup_steps, self.total_steps // 4)
        return warmup_cosine(step, self.total_steps, warmup)


def build_optimizer(
    model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """SGD (the paper) or AdamW; no weight decay on biases and normalisation weights (1-d parameters)."""
    check_optimizer(name)
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    return torch.optim.AdamW(groups, lr=lr)
