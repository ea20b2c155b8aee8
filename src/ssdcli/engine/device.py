"""Device selection and CPU thread count."""

from __future__ import annotations

import os

import torch

from ssdcli.errors import UsageError


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" picks CUDA when available; anything else must be a device torch knows and this machine has."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"device: unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name}: CUDA is not available on this machine")
    return device


def mixed_precision(amp: bool, device: torch.device) -> torch.dtype | None:
    """The dtype training autocasts to: None (float32) without ``amp`` or off CUDA; bfloat16 on a GPU that
    supports it (Ampere and later: float32's range, no loss scaling), float16 elsewhere (with a grad scaler)."""
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def mixed_precision_note(amp: bool, device: torch.device) -> str | None:
    """Why mixed precision asked for is not used on ``device`` (training uses it on CUDA only), else None."""
    if amp and device.type != "cuda":
        return f"mixed precision is for CUDA devices; training in float32 on {device.type}"
    return None


def cpu_threads(requested: int | None, workers: int) -> int:
    """Threads for the main process on CPU: as requested, else the cores left over by the data workers.

    Small tensor operations slow down sharply when more threads than free cores compete, so the default leaves
    one core per worker (and at least one thread)."""
    if requested is not None:
        if requested < 1:
            raise UsageError(f"threads: expected at least 1, got {requested}")
        return requested
    return max(1, (os.cpu_count() or 1) - workers)
