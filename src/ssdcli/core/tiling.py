"""Sliced inference, the pure parts: the windows an image is cut into, boxes found in a window moved back into the
image's pixels, and the detections of all windows merged into one set.

The grid is SAHI's: square windows of ``size`` pixels, one every ``size - int(overlap * size)`` pixels along each
side, the last one shifted inward so that it ends at the image's edge; a side shorter than ``size`` is one window
as long as the side. Torch only, no I/O.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssdcli.core.nms import nms_for_device


def window_starts(length: int, size: int, overlap: float) -> list[int]:
    """Where the windows of ``size`` pixels start along a side of ``length`` pixels, in increasing order: every
    ``size - int(overlap * size)`` pixels from 0, and a last one at ``length - size`` (shifted inward) unless a
    window already ends at the edge. ``[0]`` when the side is no longer than a window."""
    if length <= size:
        return [0]
    step = max(1, size - int(overlap * size))
    starts = list(range(0, length - size, step))
    return [*starts, length - size]


def tile_windows(height: int, width: int, size: int, overlap: float) -> Tensor:
    """The windows of an image of ``height`` x ``width`` pixels: [N, 4] int64 xyxy pixel bounds (x2, y2
    exclusive), row by row. Each window is ``size`` pixels square, or as long as the side where the image is
    shorter; together they cover every pixel, and none reaches outside the image."""
    xs = window_starts(width, size, overlap)
    ys = window_starts(height, size, overlap)
    window_width, window_height = min(size, width), min(size, height)
    rows = [[x, y, x + window_width, y + window_height] for y in ys for x in xs]
    return torch.tensor(rows, dtype=torch.int64).reshape(-1, 4)


def shift_boxes(boxes: Tensor, window: Tensor) -> Tensor:
    """Boxes found in ``window`` back in the image's pixels.

    Args:
        boxes: [K, 4] xyxy in the window's pixels (0 at its top-left corner).
        window: [4] the window's xyxy bounds in the image (as :func:`tile_windows` gives them).

    Returns:
        [K, 4] xyxy in the image's pixels, the dtype of ``boxes``.
    """
    offset = torch.stack([window[0], window[1], window[0], window[1]]).to(boxes.dtype)  # [4]
    return boxes + offset


def merge_detections(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float, top_k: int) -> Tensor:
    """Which detections of overlapping windows to keep: class-wise greedy NMS at ``iou_threshold`` (a box is
    dropped when one of its class with a higher score overlaps it by more than the threshold), then the
    ``top_k`` highest scores.

    Args:
        boxes: [N, 4] xyxy in the image's pixels; scores: [N]; labels: [N] int64 (the classes kept apart).

    Returns:
        [M] int64 indices into the detections, by decreasing score (ties: the earlier detection first), M <= top_k.
    """
    if scores.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=scores.device)
    nms = nms_for_device(boxes.device.type)
    kept = nms(boxes.float(), scores.float(), labels.long(), iou_threshold).sort().values  # [K] in input order
    order = torch.sort(scores[kept], descending=True, stable=True).indices
    return kept[order][:top_k]
