"""Distributed training context from the environment ``torchrun`` sets (RANK, WORLD_SIZE, LOCAL_RANK).

On CUDA the process group has two backends, ``"cpu:gloo,cuda:nccl"``: DDP's gradient exchange and the BatchNorm
buffers (CUDA tensors) go through NCCL, the loop's small host-side collectives (the stop flag, loss means,
gathered detections, checksums: CPU tensors and Python objects) through gloo. NCCL alone rejects a CPU tensor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank."""
        if not self.enabled:
            return value
        box: list[Any] = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) into every rank's ``module``: each rank updates them from
        its own batches, so before a sharded validation they must be made one."""
        if self.enabled:
            for buffer in module.buffers():
                dist.broadcast(buffer.data, src=0)

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order, on every rank (``[value]`` without DDP)."""
        if not self.enabled:
            return [value]
        box: list[Any] = [None] * self.world_size
        dist.all_gather_object(box, value)
        return box

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank (a stop request must stop all ranks together)."""
        if not self.enabled:
            return flag
        tensor = torch.tensor([1.0 if flag else 0.0], dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item() > 0)

    def mean(self, value: float) -> float:
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor)
        return float(tensor) / self.world_size


# What the gloo and NCCL backends say when a peer process is gone (it raised, exited or was killed).
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "remote worker crashing", "Broken pipe")


def is_peer_failure(error: BaseException) -> bool:
    """True if ``error`` is a collective that failed because another process of the group went away."""
    if isinstance(error, (dist.DistBackendError, dist.DistNetworkError)):
        return True
    return isinstance(error, RuntimeError) and any(text in str(error) for text in _PEER_GONE)


def process_group_backend(device_type: str) -> str:
    """The backend of the process group for training on ``device_type``: gloo for CPU tensors always (the
    loop's host-side collectives), NCCL for CUDA tensors when training on CUDA."""
    return "cpu:gloo,cuda:nccl" if device_type == "cuda" else "gloo"


def served_device_types(backend: str) -> frozenset[str]:
    """The device types whose tensors a process group made with ``backend`` takes in collectives:
    ``"cpu:gloo,cuda:nccl"`` -> {cpu, cuda}; ``"nccl"`` -> {cuda}; ``"gloo"`` -> {cpu, cuda} (gloo copies CUDA
    tensors through the host)."""
    single = {"nccl": ("cuda",), "gloo": ("cpu", "cuda"), "mpi": ("cpu", "cuda")}
    if ":" not in backend:
        return frozenset(single.get(backend, ()))
    return frozenset(pair.split(":")[0].strip() for pair in backend.split(","))


def init_distributed(device_type: str) -> DistContext:
    """Join the process group if launched by torchrun (:func:`process_group_backend`); a single process
    otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(backend=process_group_backend(device_type))
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown_distributed(context: DistContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
