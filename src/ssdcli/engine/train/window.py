"""The losses of the training steps since the loop last looked at them, kept on the device.

A training step queues its work on the device and moves on; reading a loss back (``.item()``, ``.cpu()``,
``bool(torch.isfinite(...))``) waits for the device to finish. The loop therefore reads the losses of
:data:`CHECK_EVERY` steps at once: one host synchronisation per window, where a non-finite loss is found, the
epoch's loss sums are updated and the figures of progress reports come from.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: Steps per check of the losses (a non-finite one stops the run) and, under DDP, of stop requests. Ten steps of
#: SSD300 are about a second on a current GPU, so a NaN still stops the run within a second or two of training;
#: each epoch's last step is checked too.
CHECK_EVERY = 10


class LossWindow:
    """The (conf, loc) losses of up to ``size`` steps, [n, 2] float64 on ``device``, written without waiting."""

    def __init__(self, device: torch.device, size: int = CHECK_EVERY) -> None:
        if size < 1:
            raise ValueError(f"size: expected at least 1 step per check, got {size}")
        self.rows = torch.zeros(size, 2, dtype=torch.float64, device=device)
        self.filled = 0

    def __len__(self) -> int:
        return self.filled

    @property
    def full(self) -> bool:
        return self.filled == self.rows.shape[0]

    def add(self, conf: Tensor, loc: Tensor) -> None:
        """Queue one step's losses (scalars on the device) into the window; no host synchronisation."""
        self.rows[self.filled, 0] = conf.detach()
        self.rows[self.filled, 1] = loc.detach()
        self.filled += 1

    def take(self) -> list[tuple[float, float]]:
        """The queued steps' (conf, loc), oldest first (the one host synchronisation); the window is empty after."""
        rows = self.rows[: self.filled].tolist()
        self.filled = 0
        return [(conf, loc) for conf, loc in rows]


def first_non_finite(rows: list[tuple[float, float]]) -> int | None:
    """Index of the first row with a non-finite loss, None if every loss is finite."""
    return next((i for i, (conf, loc) in enumerate(rows) if not math.isfinite(conf + loc)), None)
