"""The one comparison of an exported file's outputs with those it must reproduce. Every value on both sides must
be finite before any difference is taken: ``max(0.0, nan)`` is 0.0 and ``nan > tolerance`` is false, so a NaN
would otherwise pass as a perfect match."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from ssdcli.errors import SsdcliError

#: An output as either side gives it: a tensor (PyTorch) or an array (ONNX Runtime).
Output = Tensor | np.ndarray


class ExportFailed(SsdcliError):
    """The exported file does not reproduce the PyTorch model."""


def as_array(output: Output) -> np.ndarray:
    return output.detach().cpu().numpy() if isinstance(output, Tensor) else np.asarray(output)


def check_finite(outputs: Sequence[Output], side: str, path: str | Path) -> None:
    """:class:`ExportFailed` naming ``path`` if any value of ``outputs`` (``side``'s, e.g. "PyTorch") is NaN or
    infinite."""
    bad = sum(int(np.count_nonzero(~np.isfinite(as_array(output)))) for output in outputs)
    if bad:
        message = f"{side}'s outputs are not finite ({bad} NaN or infinite values); file not written"
        raise ExportFailed(message, path=path)


def largest_difference(
    expected: Sequence[Output], got: Sequence[Output], sides: tuple[str, str], path: str | Path
) -> float:
    """The largest absolute difference between paired outputs (0 when all are empty); :class:`ExportFailed`
    naming ``path`` if either side (``sides``: their names) has a value that is not finite, or the pairs differ in
    number or shape."""
    check_finite(expected, sides[0], path)
    check_finite(got, sides[1], path)
    pairs = [(as_array(e).astype(np.float64), as_array(g).astype(np.float64)) for e, g in zip(expected, got)]
    if len(expected) != len(got) or any(e.shape != g.shape for e, g in pairs):
        shapes = [[tuple(as_array(output).shape) for output in side] for side in (expected, got)]
        raise ExportFailed(f"{sides[1]}'s outputs differ in number or shape from {sides[0]}'s: {shapes}", path=path)
    return max((float(np.abs(e - g).max()) for e, g in pairs if e.size), default=0.0)
