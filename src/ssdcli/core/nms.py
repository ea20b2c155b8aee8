"""Greedy NMS for many groups at once, exact, without a loop over groups or boxes.

``torchvision.ops.batched_nms`` runs one greedy pass over all candidates (its coordinate trick: O(kept x N)) or,
above 1,000 boxes on CPU, a Python loop over the groups with a mask over all candidates per group. A batch of
detections has one group per (image, class): B x (C - 1) groups of up to 400 candidates, where both paths are
slow. Here the candidates are laid out [M, K] (M non-empty groups, K the largest group), the pairwise
"overlaps more than the threshold" matrix [M, K, K] is built per chunk of groups, and the greedy result is found
as the fixed point of

    kept[j] = no kept i ranked before j in the same group has IoU(i, j) > threshold,

iterated from "everything kept" (the Cluster-NMS iteration, Zheng et al. 2021). Entry j depends only on the
entries before it, so after t rounds the first t ranks of every group are final: the iteration reaches greedy
NMS's exact answer, usually in a few rounds and at most K. IoU is computed with the same float operations in the
same order as torchvision's NMS kernel, so decisions at the threshold agree with it bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

#: Largest number of [K, K] overlap entries built at once (chunks of groups), 2 MB as float32 (a chunk stays in cache).
_CHUNK_ENTRIES = 1 << 19


def group_ranks(scores: Tensor, groups: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Order candidates by group, then by decreasing score (ties: the earlier candidate first).

    Args:
        scores: [N] float; groups: [N] int64 >= 0.

    Returns:
        order [N] (indices into the candidates), rank [N] (0-based rank of order[i] within its group) and
        group_of [N] (= groups[order]).
    """
    by_score = torch.sort(scores, descending=True, stable=True).indices
    order = by_score[torch.sort(groups[by_score], stable=True).indices]  # [N]
    group_of = groups[order]
    counts = torch.bincount(group_of)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(order.numel(), device=scores.device) - starts[group_of]
    return order, rank, group_of


def _threshold_below(iou_threshold: float, dtype: torch.dtype) -> float:
    """The largest value of ``dtype`` at most ``iou_threshold``: for x of that dtype, x > it iff x > the threshold
    (compared in double precision, as torchvision's kernel does)."""
    value = torch.tensor(iou_threshold, dtype=dtype)
    if float(value) > iou_threshold:
        value = torch.nextafter(value, torch.tensor(float("-inf"), dtype=dtype))
    return float(value)


def _overlaps(boxes: Tensor, iou_threshold: float, buffers: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """boxes [M, K, 4] xyxy -> [M, K, K] float32, 1 where box i comes before box j (i < j) and
    IoU(i, j) > threshold; written into ``buffers`` (three tensors of at least M * K * K elements of the boxes'
    dtype, reused from chunk to chunk).

    The IoU is computed as torchvision's NMS kernel does, in the boxes' dtype: widths and heights clamped at 0,
    inter = w * h, IoU = inter / (area_i + area_j - inter), compared with the threshold in double precision.
    """
    rows, size, _ = boxes.shape
    first, second, third = (buffer[: rows * size * size].view(rows, size, size) for buffer in buffers)
    x1, y1, x2, y2 = (coordinate.contiguous() for coordinate in boxes.unbind(-1))  # [M, K] each
    area = (x2 - x1) * (y2 - y1)
    inter = torch.minimum(x2[:, :, None], x2[:, None, :], out=first)  # the width of the intersection for now
    inter.sub_(torch.maximum(x1[:, :, None], x1[:, None, :], out=second)).clamp_(min=0)
    height = torch.minimum(y2[:, :, None], y2[:, None, :], out=second)
    height.sub_(torch.maximum(y1[:, :, None], y1[:, None, :], out=third)).clamp_(min=0)
    inter.mul_(height)
    union = torch.add(area[:, :, None], area[:, None, :], out=second).sub_(inter)
    over = third if boxes.dtype == torch.float32 else third.new_empty(rows, size, size, dtype=torch.float32)
    torch.gt(inter.div_(union), _threshold_below(iou_threshold, boxes.dtype), out=over)
    return over.triu_(1)


def _keep_in_chunk(
    boxes: Tensor, valid: Tensor, iou_threshold: float, buffers: tuple[Tensor, Tensor, Tensor]
) -> Tensor:
    """Greedy NMS of each row of boxes [M, K, 4] (sorted by decreasing score; ``valid`` [M, K] marks real
    candidates, a prefix of each row). Returns kept [M, K] bool."""
    over = _overlaps(boxes, iou_threshold, buffers)  # [M, K, K]
    kept = valid.clone()
    for _ in range(boxes.shape[1]):
        suppressed = torch.bmm(kept.to(over.dtype)[:, None, :], over)[:, 0] > 0  # [M, K]
        update = valid & ~suppressed
        if torch.equal(update, kept):
            break
        kept = update
    return kept


def grouped_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS within each group, all groups at once: the same boxes as ``torchvision.ops.batched_nms``.

    Args:
        boxes: [N, 4] xyxy; scores: [N]; groups: [N] int64 >= 0.

    Returns:
        Indices [K] of the kept candidates, grouped by group id (ascending), by decreasing score within a group.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order, rank, group_of = group_ranks(scores, groups)
    _, row = torch.unique_consecutive(group_of, return_inverse=True)  # [N] row of the padded layout
    rows, width = int(row[-1]) + 1, int(rank.max()) + 1
    padded = boxes.new_zeros(rows, width, 4)
    padded[row, rank] = boxes[order]
    valid = torch.zeros(rows, width, dtype=torch.bool, device=boxes.device)
    valid[row, rank] = True
    step = min(rows, max(1, _CHUNK_ENTRIES // (width * width)))
    buffers = tuple(boxes.new_empty(step * width * width) for _ in range(3))
    kept = torch.cat(
        [
            _keep_in_chunk(padded[s : s + step], valid[s : s + step], iou_threshold, buffers)  # type: ignore[arg-type]
            for s in range(0, rows, step)
        ]
    )  # [M, K]
    return order[kept[row, rank]]


def torchvision_grouped_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """:func:`grouped_nms` by ``torchvision.ops.batched_nms``: the same arguments, the same result, the same order.

    ``batched_nms`` separates the groups by adding ``group * (largest coordinate + 1)`` to the coordinates (up to
    25,000 boxes on CUDA, 1,000 on the CPU; above that, one ``nms`` call per group). In float32 those offsets cost
    the low bits of every coordinate (up to 1e-3 of IoU once there are a few hundred groups), so the boxes go in
    as float64, where the offsets are exact; the order of the candidates is passed as strictly decreasing scores,
    so ties in score are ranked as in :func:`grouped_nms` (the earlier candidate first). The kept sets agree
    with :func:`grouped_nms` except for an IoU within float32 rounding (about 1e-7) of the threshold, which
    torchvision compares in float64 here.

    Args:
        boxes: [N, 4] xyxy; scores: [N]; groups: [N] int64 >= 0.

    Returns:
        Indices [K] of the kept candidates, grouped by group id (ascending), by decreasing score within a group.
    """
    from torchvision.ops import batched_nms

    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order, _, group_of = group_ranks(scores, groups)
    position = torch.arange(order.numel(), 0, -1, device=boxes.device, dtype=torch.float64)  # [N] decreasing
    kept = batched_nms(boxes[order].double(), position, group_of, iou_threshold)  # positions in ``order``
    return order[kept.sort().values]


#: The signature both implementations share: boxes [N, 4], scores [N], groups [N], IoU threshold -> kept [K].
NmsFunction = Callable[[Tensor, Tensor, Tensor, float], Tensor]


def nms_for_device(device_type: str) -> NmsFunction:
    """The grouped NMS to run on a device type ("cpu", "cuda", ...); both give the same detections.

    CUDA: :func:`torchvision_grouped_nms`. Its kernel does the whole suppression in one call with one host
    synchronisation (the kept mask read back), where :func:`grouped_nms` synchronises once per fixed-point round
    and per chunk of groups. Every other device: :func:`grouped_nms`, which on the CPU is 1.6x - 2.3x (dense)
    and 11x - 39x (trained-like) faster than :func:`torchvision_grouped_nms` on the candidates ``postprocess``
    hands its NMS (``benchmarks/core.py``'s nms cases, docs/performance.md).
    """
    return torchvision_grouped_nms if device_type == "cuda" else grouped_nms
