"""Reproducible sampling for training: per-sample random seeds, and resuming in the middle of an epoch.

Augmentation draws its random numbers from torch's (and NumPy's and Python's) global generators. Seeding them
afresh for every sample from (run seed, epoch, sample index) makes a sample's augmentation independent of which
DataLoader worker draws it and of what that worker drew before: a run gives the same batches with 0 or 2 workers,
and a run resumed in the middle of an epoch gives the batches the uninterrupted run would have, without decoding
the batches it skips (:class:`SkipFirst`). The generators get their states back after each sample
(:func:`seeded`), so that loading data in the caller's process (no workers) leaves the caller's random streams as
they were.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import Sampler

_MIX = (1_000_003, 7_919)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample of one epoch, different for every (seed, epoch, index)."""
    return (seed * _MIX[0] + epoch) * _MIX[1] * 1_000_000_007 + index & ((1 << 63) - 1)


@contextmanager
def seeded(value: int) -> Iterator[None]:
    """Inside the block, torch's (CPU), NumPy's and Python's global generators are seeded from ``value``; after it,
    each has the state it had before."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(value)
        np.random.seed(value % (1 << 32))
        random.seed(value)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)


class SkipFirst(Sampler[int]):
    """The indices of ``sampler`` from position ``skip`` on (the samples of the batches already trained)."""

    def __init__(self, sampler: Sampler[int], skip: int = 0) -> None:
        self.sampler = sampler
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        for position, index in enumerate(self.sampler):
            if position >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)  # type: ignore[arg-type]
