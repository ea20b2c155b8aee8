"""A count of the calls that make the host wait for a device's result, on any device (the CPU included).

``torch.cuda.set_sync_debug_mode`` reports synchronisations on CUDA only; on the CPU nothing waits, so the same
places are counted by name instead: reading values (``item``, ``tolist``, ``cpu``, ``numpy``, ``bool()``,
``int()``, ``float()``), and operations whose output size depends on values (``nonzero``, ``unique``,
``masked_select``, indexing with a boolean mask).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

READS = {"item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__"}
VALUE_SIZED = {"nonzero", "argwhere", "unique", "unique_consecutive", "masked_select"}


def _boolean_index(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(part, torch.Tensor) and part.dtype == torch.bool for part in parts)


class HostSyncs(TorchFunctionMode):
    """Inside ``with HostSyncs() as syncs:``, ``syncs.total`` counts the calls above, ``syncs.names`` by name."""

    def __init__(self) -> None:
        super().__init__()
        self.names: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.names.values())

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in READS or name in VALUE_SIZED:
            self.names[name] += 1
        elif name in ("__getitem__", "__setitem__") and len(args) > 1 and _boolean_index(args[1]):
            self.names[f"{name}[mask]"] += 1
        return func(*args, **(kwargs or {}))
