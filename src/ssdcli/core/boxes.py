"""Box format conversions, validation and batched IoU.

Formats: ``xyxy`` corners (x1, y1, x2, y2) and ``cxcywh`` centre-size (cx, cy, w, h); both normalised to [0, 1]
in the core engine. Detections in an image's pixels are ``xyxy`` 0-based continuous (the box spans x1 .. x2); their
interchange forms are COCO's ``xywh`` (x1, y1, w, h) and the VOC devkit's 1-based inclusive pixel indices
(x1 + 1, y1 + 1, x2, y2). The xyxy, cxcywh and xywh conversions take numpy arrays or tensors; the devkit ones
float64 numpy arrays.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

BoxArray = TypeVar("BoxArray", Tensor, np.ndarray)


def _joined(like: BoxArray, first: BoxArray, second: BoxArray) -> BoxArray:
    if isinstance(like, Tensor):
        return torch.cat((first, second), dim=-1)
    return np.concatenate((first, second), axis=-1)


def cxcywh_to_xyxy(boxes: BoxArray) -> BoxArray:
    """[..., 4] cxcywh -> [..., 4] xyxy, numpy or torch."""
    centre, size = boxes[..., :2], boxes[..., 2:]
    return _joined(boxes, centre - 0.5 * size, centre + 0.5 * size)


def xyxy_to_cxcywh(boxes: BoxArray) -> BoxArray:
    """[..., 4] xyxy -> [..., 4] cxcywh, numpy or torch."""
    top_left, bottom_right = boxes[..., :2], boxes[..., 2:]
    return _joined(boxes, 0.5 * (top_left + bottom_right), bottom_right - top_left)


def xywh_to_xyxy(boxes: BoxArray) -> BoxArray:
    """[..., 4] xywh (COCO) -> [..., 4] xyxy, numpy or torch."""
    corner = boxes[..., :2]
    return _joined(boxes, corner, corner + boxes[..., 2:])


def xyxy_to_xywh(boxes: BoxArray) -> BoxArray:
    """[..., 4] xyxy -> [..., 4] xywh (COCO), numpy or torch."""
    corner = boxes[..., :2]
    return _joined(boxes, corner, boxes[..., 2:] - corner)


def xyxy_to_devkit(boxes: np.ndarray) -> np.ndarray:
    """0-based continuous pixel boxes [..., 4] xyxy -> the VOC devkit's 1-based inclusive pixel indices [..., 4]
    (x1 + 1, y1 + 1, x2, y2), float64."""
    out = np.array(boxes, dtype=np.float64)
    out[..., :2] += 1.0
    return out


def devkit_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """The VOC devkit's 1-based inclusive pixel boxes [..., 4] -> 0-based continuous xyxy [..., 4]
    (x1 - 1, y1 - 1, x2, y2), float64."""
    out = np.array(boxes, dtype=np.float64)
    out[..., :2] -= 1.0
    return out


def has_area(boxes: Tensor) -> Tensor:
    """xyxy boxes [..., 4] -> [...] bool: positive width and height."""
    return (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])


def axis_overlap(low1: Tensor, high1: Tensor, low2: Tensor, high2: Tensor, out: Tensor | None = None) -> Tensor:
    """Length of the overlap of the intervals [low1, high1] and [low2, high2] (broadcast), 0 where they are apart.

    ``out`` (the broadcast shape), if given, receives the result.
    """
    high = torch.minimum(high1, high2) if out is None else torch.minimum(high1, high2, out=out)
    return high.sub_(torch.maximum(low1, low2)).clamp_(min=0)


def iou_from_union_(inter: Tensor, union: Tensor) -> Tensor:
    """inter / union where union > 0, else 0 (also for a NaN union), written into ``inter``; ``union`` is clobbered."""
    apart = ~(union > 0)
    inter.div_(union.clamp_(min=torch.finfo(union.dtype).tiny))
    return inter.masked_fill_(apart, 0.0)


def pairwise_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of every box of ``boxes1`` [B, N, 4] with every box of ``boxes2`` [M, 4] or [B, M, 4], both xyxy.

    Returns [B, N, M]. Boxes of zero area have IoU 0 with everything (never NaN). This is the batched form of
    ``torchvision.ops.box_iou``, which handles a single image only. It works one coordinate at a time ([B, N, 1]
    against [B|1, 1, M]) and, unless a gradient is needed, in place in two [B, N, M] tensors.
    """
    if boxes2.dim() == 2:
        boxes2 = boxes2.unsqueeze(0)
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])  # [B, N]
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])  # [B|1, M]
    x1, y1, x2, y2 = (boxes1[..., :, None, i] for i in range(4))  # [B, N, 1] each
    u1, v1, u2, v2 = (boxes2[..., None, :, i] for i in range(4))  # [B|1, 1, M] each
    if torch.is_grad_enabled() and (boxes1.requires_grad or boxes2.requires_grad):
        width = (torch.minimum(x2, u2) - torch.maximum(x1, u1)).clamp(min=0)
        height = (torch.minimum(y2, v2) - torch.maximum(y1, v1)).clamp(min=0)
        inter = width * height  # [B, N, M]
        union = area1[..., :, None] + area2[..., None, :] - inter
        return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)
    inter = axis_overlap(x1, x2, u1, u2)  # [B, N, M], the width of the intersection for now
    union = axis_overlap(y1, y2, v1, v2)  # [B, N, M], its height for now
    inter.mul_(union)
    torch.add(area1[..., :, None], area2[..., None, :], out=union).sub_(inter)
    return iou_from_union_(inter, union)


def check_tensor(name: str, tensor: object, dims: int, last: int | None = None) -> Tensor:
    """Raise ``ValueError`` naming ``name`` unless ``tensor`` is a tensor of ``dims`` dimensions (last size ``last``)."""
    if not isinstance(tensor, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != dims or (last is not None and tensor.shape[-1] != last):
        want = f"{dims}-d" + (f" with last size {last}" if last is not None else "")
        raise ValueError(f"{name}: expected a {want} tensor, got shape {tuple(tensor.shape)}")
    return tensor


def check_finite(name: str, tensor: Tensor) -> None:
    """Raise ``ValueError`` naming ``name`` if ``tensor`` holds NaN or infinity."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name}: holds NaN or infinite values (shape {tuple(tensor.shape)})")


def check_xyxy(name: str, boxes: Tensor, valid: Tensor | None = None) -> None:
    """Raise ``ValueError`` if any (valid) box of ``boxes`` [..., 4] is not finite or has x2 < x1 or y2 < y1."""
    if valid is not None:
        boxes = boxes[valid]
    check_finite(name, boxes)
    bad = (boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])
    if bool(bad.any()):
        first = boxes[bad][0].tolist()
        raise ValueError(
            f"{name}: {int(bad.sum())} box(es) with x2 < x1 or y2 < y1 (shape {tuple(boxes.shape)}), first {first}"
        )
