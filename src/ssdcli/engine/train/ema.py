"""Exponential moving average of a model's weights (as in Ultralytics and timm's ``ModelEmaV2``).

After each optimizer step, every parameter of the average moves towards the model's:
``ema = d * ema + (1 - d) * model`` with ``d = decay * (1 - exp(-updates / tau))``, so early updates (``d`` near
0) follow the model closely and the average settles as training goes on. Buffers (BatchNorm's running
statistics and counters) are copied from the model. Validation and the saved checkpoints use the average.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from ssdcli.config import DEFAULT_EMA_DECAY, DEFAULT_EMA_TAU


def ema_decay(updates: int, decay: float, tau: float) -> float:
    """The decay of update number ``updates`` (1-based): ``decay * (1 - exp(-updates / tau))``."""
    return decay * (1.0 - math.exp(-updates / tau))


class ModelEMA:
    """A frozen copy of ``model`` whose weights follow the model's as an exponential moving average.

    Args:
        model: the model being trained (not a DDP wrapper); the average starts as a copy of it.
        decay: the decay the ramp approaches.
        tau: the number of updates over which the decay ramps up (about 63 % of ``decay`` after ``tau``).
        updates: updates already made (when resuming).
    """

    def __init__(
        self, model: nn.Module, decay: float = DEFAULT_EMA_DECAY, tau: float = DEFAULT_EMA_TAU, updates: int = 0
    ) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay: expected a number in [0, 1), got {decay}")
        if tau <= 0:
            raise ValueError(f"ema tau: expected a positive number of updates, got {tau}")
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = updates

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards ``model``'s current weights."""
        self.updates += 1
        d = ema_decay(self.updates, self.decay, self.tau)
        for average, current in zip(self.module.parameters(), model.parameters()):
            average.mul_(d).add_(current.detach(), alpha=1.0 - d)
        for kept, latest in zip(self.module.buffers(), model.buffers()):
            kept.copy_(latest)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to continue the average: its weights and the update count."""
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay, "tau": self.tau}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self.decay = float(state.get("decay", self.decay))
        self.tau = float(state.get("tau", self.tau))
