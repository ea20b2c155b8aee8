"""Object size buckets: sqrt(area) in pixels of the network input."""

from __future__ import annotations

import torch

#: Upper edges (exclusive) of the size buckets, in px of sqrt(w * h) at the network input.
SIZE_EDGES: tuple[float, ...] = (16, 32, 64, 128, 256)
SIZE_BUCKETS: tuple[str, ...] = ("<16", "16-32", "32-64", "64-128", "128-256", ">=256")


def size_bucket(side: float) -> str:
    """The bucket name of an object with sqrt(area) ``side`` px at the network input."""
    return SIZE_BUCKETS[sum(side >= edge for edge in SIZE_EDGES)]


def size_bucket_index(side: torch.Tensor) -> torch.Tensor:
    """[M] int64 bucket index (into :data:`SIZE_BUCKETS`) of sqrt(area) values ``side`` [M] px."""
    edges = torch.tensor(SIZE_EDGES, dtype=side.dtype, device=side.device)
    return torch.bucketize(side, edges, right=True)
