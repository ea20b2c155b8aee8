"""The global random generators' states (torch, NumPy, Python): saved with every checkpoint, restored on
resume so that a resumed run draws what the uninterrupted one would have."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    """The global generators' states (torch, NumPy, Python), saved with every checkpoint in types that
    ``torch.load(weights_only=True)`` reads (tensors, lists, numbers)."""
    state = np.random.get_state(legacy=True)
    assert isinstance(state, tuple)  # the legacy form: (kind, keys, position, has_gauss, gauss)
    kind, keys, position, has_gauss, gauss = state
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},  # fmt: skip
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }


def restore_rng(state: dict[str, Any] | None) -> None:
    if not state:
        return
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
