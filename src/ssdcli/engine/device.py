"""Device selection."""

from __future__ import annotations

import torch

from ssdcli.errors import UsageError


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" picks CUDA when available; anything else must be a device torch knows and this machine has."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device: unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine")
    return device
