"""``ssd encode --data --suggest K``: fit aspect ratios and scales of an anchor layout to a data set's boxes.

The feature maps, steps and input size stay those of the starting layout (a model's feature maps are fixed).
Candidates are scored by coverage (share of GTs with a default box of IoU > threshold), then mean best IoU,
with :func:`~.coverage.gt_best_iou`; the search is deterministic:

1. aspect ratios: the start's, K ratios from k-means on log(w/h) of all boxes (the same on every layer), and K
   per layer from the boxes whose scale is nearest that layer's (falling back to the global ones);
2. for each ratio set, one scale factor on all ``sizes`` from a log grid (0.5x to 2x, 1x included);
3. then, for the best of these, while that helps, each size on its own (x0.8, 0.9, 1.1, 1.25) and each neighbouring pair in opposite
   directions (sizes kept increasing).

Because the start itself is a candidate, the result is never worse than the start.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ssdcli.core.anchors import AnchorLayout
from ssdcli.data.files import check_new_file, write_atomic
from ssdcli.engine.inspect.coverage import GtSet, coverage_of, gt_best_iou
from ssdcli.errors import DataError, UsageError

#: Global scale factors tried on all sizes at once (a log grid from 0.5 to 2 holding 1).
SCALE_FACTORS: tuple[float, ...] = tuple(2.0 ** (k / 8) for k in range(-8, 9))
#: Factors tried on one size at a time.
SIZE_STEPS: tuple[float, ...] = (0.8, 0.9, 1.1, 1.25)
MAX_PASSES = 4
KMEANS_ITERATIONS = 100
SIZE_DECIMALS = 2
RATIO_DECIMALS = 4


@dataclass(frozen=True)
class Suggestion:
    """The starting and the suggested layout with their coverage (share of GTs with a box of IoU > threshold)
    and mean best IoU at ``threshold``; ``accepted`` if the suggestion is at least as good as the start."""

    start: AnchorLayout
    layout: AnchorLayout
    threshold: float
    k: int
    gts: int
    start_coverage: float
    coverage: float
    start_mean_iou: float
    mean_iou: float
    candidates: int
    ratio_source: str

    @property
    def accepted(self) -> bool:
        return self.coverage >= self.start_coverage


def kmeans_1d(values: torch.Tensor, k: int, iterations: int = KMEANS_ITERATIONS) -> torch.Tensor:
    """[<=k] sorted cluster centres of ``values`` [M] (Lloyd's algorithm from quantile starts; deterministic)."""
    values = values.double()
    centres = torch.quantile(values, (torch.arange(k, dtype=torch.float64) + 0.5) / k)
    for _ in range(iterations):
        assign = (values[:, None] - centres[None, :]).abs().argmin(dim=1)  # [M]
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, assign, values)
        counts = torch.bincount(assign, minlength=k)
        updated = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
        if torch.equal(updated, centres):
            break
        centres = updated
    return torch.unique(centres)


def _ratios(log_ratios: torch.Tensor, k: int) -> tuple[float, ...]:
    """K aspect ratios (w/h) from k-means on log(w/h), rounded, without repeats."""
    centres = kmeans_1d(log_ratios, k)
    return tuple(dict.fromkeys(round(math.exp(float(c)), RATIO_DECIMALS) for c in centres))


def _ratio_sets(start: AnchorLayout, wh: torch.Tensor, k: int) -> dict[str, tuple[tuple[float, ...], ...]]:
    """Candidate per-layer aspect ratios: the start's, global k-means, per-layer k-means. ``wh`` [M, 2] input px."""
    log_ratio = torch.log(wh[:, 0] / wh[:, 1])  # [M]
    global_ratios = _ratios(log_ratio, k)
    # Each box goes to the layer whose middle scale sqrt(s_k s_k+1) is nearest its own sqrt(w h) (in log).
    middle = torch.tensor([math.sqrt(a * b) for a, b in zip(start.sizes[:-1], start.sizes[1:])], dtype=torch.float64)
    scale = torch.log(wh.double().prod(dim=1).sqrt())  # [M]
    layer = (scale[:, None] - torch.log(middle)[None, :]).abs().argmin(dim=1)  # [M]
    per_layer = tuple(
        _ratios(log_ratio[layer == n], k) if int((layer == n).sum()) >= 2 * k else global_ratios
        for n in range(start.num_layers)
    )
    return {
        "start": start.aspect_ratios,
        "k-means": (global_ratios,) * start.num_layers,
        "k-means per layer": per_layer,
    }


def _moves(sizes: tuple[float, ...]) -> list[tuple[float, ...]]:
    """Sizes one step away: each size scaled alone, and each neighbouring pair scaled in opposite directions (which
    keeps the pair's geometric mean, the second square of the layer between them); only increasing ones."""
    moves = []
    for n in range(len(sizes)):
        for step in SIZE_STEPS:
            changed = list(sizes)
            changed[n] *= step
            moves.append(tuple(changed))
            if n + 1 < len(sizes):
                changed[n + 1] /= step
                moves.append(tuple(changed))
    return [m for m in moves if all(b > a for a, b in zip(m, m[1:]))]


def _with(layout: AnchorLayout, sizes: tuple[float, ...], ratios: tuple[tuple[float, ...], ...]) -> AnchorLayout:
    return replace(layout, sizes=tuple(round(s, SIZE_DECIMALS) for s in sizes), aspect_ratios=ratios)


def suggest_layout(gts: GtSet, start: AnchorLayout, k: int, threshold: float = 0.5) -> Suggestion:
    """Search aspect ratios and sizes for ``start``'s feature maps that raise coverage of ``gts`` at ``threshold``."""
    if k < 1:
        raise UsageError(f"`suggest`: the number of aspect ratios must be at least 1, got {k}")
    boxes = gts.boxes[gts.valid]  # [M, 4] xyxy normalised
    wh = (boxes[:, 2:] - boxes[:, :2]) * start.image_size  # [M, 2] px at the input
    keep = (wh > 0).all(dim=1)
    if not bool(keep.any()):
        raise DataError("the data set has no boxes to fit anchors to", path=gts.source or None)
    scored: dict[AnchorLayout, tuple[float, float]] = {}

    def score(layout: AnchorLayout) -> tuple[float, float]:
        if layout not in scored:
            scored[layout] = coverage_of(gt_best_iou(gts, layout), threshold)
        return scored[layout]

    start_score = score(start)
    scaled = {
        source: max((_with(start, tuple(s * f for s in start.sizes), ratios) for f in SCALE_FACTORS), key=score)
        for source, ratios in _ratio_sets(start, wh[keep], k).items()
    }
    source, layout = max(scaled.items(), key=lambda item: score(item[1]))
    for _ in range(MAX_PASSES):
        improved = False
        for sizes in _moves(layout.sizes):
            candidate = _with(layout, sizes, layout.aspect_ratios)
            if score(candidate) > score(layout):
                layout, improved = candidate, True
        if not improved:
            break
    best_layout, best_score = (layout, score(layout)) if score(layout) > start_score else (start, start_score)
    best_source = source if best_layout is not start else "start"
    return Suggestion(
        start=start,
        layout=best_layout,
        threshold=threshold,
        k=k,
        gts=int(boxes.shape[0]),
        start_coverage=start_score[0],
        coverage=best_score[0],
        start_mean_iou=start_score[1],
        mean_iou=best_score[1],
        candidates=len(scored),
        ratio_source=best_source,
    )


def write_layout(layout: AnchorLayout, path: str | Path, force: bool = False) -> Path:
    """Write ``layout.to_dict()`` as JSON (what ``ssd train --anchors`` reads); refuses to overwrite unless ``force``."""
    check_new_file(path, force)
    return write_atomic(path, (json.dumps(layout.to_dict(), indent=2) + "\n").encode())
