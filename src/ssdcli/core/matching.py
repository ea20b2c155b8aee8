"""Batched matching of ground truth to default boxes and target encoding (DESIGN.md 1.3).

Every image of a batch is matched at once: GTs are padded to [B, G, 4] and padding is marked by class -1.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .boxes import check_finite, check_tensor, check_xyxy, cxcywh_to_xyxy, pairwise_iou
from .coder import PRIOR_SCALING, encode_offsets


class Match(NamedTuple):
    """Which GT each default box is assigned to.

    gt_index: [B, A] int64, index into the image's GTs, -1 for background.
    scores: [B, A] best IoU of the default box with any valid GT (0 where the image has none).
    iou: [B, G, A] IoU of every GT with every default box (-1 for padding GTs).
    """

    gt_index: Tensor
    scores: Tensor
    iou: Tensor


class EncodedTargets(NamedTuple):
    """Training targets of a batch.

    labels: [B, A] int64, 0 = background, else the matched GT's class.
    offsets: [B, A, 4] encoded offsets of the matched GT (0 for background).
    scores: [B, A] best IoU of each default box with any valid GT.
    """

    labels: Tensor
    offsets: Tensor
    scores: Tensor


def _check_inputs(boxes: Tensor, classes: Tensor, anchors: Tensor, threshold: float, num_classes: int | None) -> None:
    check_tensor("boxes", boxes, 3, 4)
    check_tensor("classes", classes, 2)
    check_tensor("anchors", anchors, 2, 4)
    if classes.shape != boxes.shape[:2]:
        raise ValueError(f"classes: expected shape {tuple(boxes.shape[:2])} to match boxes, got {tuple(classes.shape)}")
    if classes.is_floating_point() or classes.dtype == torch.bool:
        raise ValueError(f"classes: expected an integer tensor, got dtype {classes.dtype}")
    if not boxes.is_floating_point():
        raise ValueError(f"boxes: expected a floating point tensor, got dtype {boxes.dtype}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold: expected a value in [0, 1], got {threshold}")
    bad = (classes == 0) | (classes < -1)
    if num_classes is not None:
        bad |= classes >= num_classes
    if bool(bad.any()):
        allowed = "-1 (padding) or 1.." + ("" if num_classes is None else str(num_classes - 1))
        raise ValueError(
            f"classes: {int(bad.sum())} value(s) out of range (shape {tuple(classes.shape)}), "
            f"first {int(classes[bad][0])}; allowed: {allowed}"
        )
    check_xyxy("boxes", boxes, valid=classes >= 1)
    check_finite("anchors", anchors)


def match(
    boxes: Tensor,
    classes: Tensor,
    anchors: Tensor,
    threshold: float = 0.5,
    best_anchor: bool = True,
    num_classes: int | None = None,
) -> Match:
    """Assign each default box to at most one GT, for a whole batch at once.

    Args:
        boxes: [B, G, 4] xyxy normalised GT boxes.
        classes: [B, G] int64 GT classes (1..C-1), -1 marks padding.
        anchors: [A, 4] cxcywh default boxes.
        threshold: a default box takes its highest-IoU GT if that IoU is > threshold (strictly); ties go to the
            earlier GT (the reference rule).
        best_anchor: additionally give every GT its own highest-IoU default box, even below the threshold (the
            SSD paper, torchvision). If several GTs pick the same default box, the later GT keeps it (as
            torchvision's indexed assignment does). A GT overlapping no default box at all is left unmatched.
        num_classes: if given, classes must be < num_classes.
    """
    _check_inputs(boxes, classes, anchors, threshold, num_classes)
    valid = classes >= 1  # [B, G]
    anchors_xyxy = cxcywh_to_xyxy(anchors.to(boxes.dtype))
    iou = pairwise_iou(boxes, anchors_xyxy)  # [B, G, A]
    iou = iou.masked_fill(~valid[:, :, None], -1.0)
    batch, num_gt, num_anchors = iou.shape
    if num_gt == 0:
        empty = torch.full((batch, num_anchors), -1, dtype=torch.int64, device=boxes.device)
        return Match(empty, boxes.new_zeros(batch, num_anchors), iou)
    best_iou, best_gt = iou.max(dim=1)  # [B, A]; first GT wins ties
    gt_index = torch.where(best_iou > threshold, best_gt, torch.full_like(best_gt, -1))
    if best_anchor:
        gt_best_iou, gt_best_anchor = iou.max(dim=2)  # [B, G]; first anchor wins ties
        forcible = valid & (gt_best_iou > 0)
        candidate = torch.arange(num_gt, device=boxes.device).expand(batch, num_gt)
        candidate = torch.where(forcible, candidate, torch.full_like(candidate, -1))
        forced = torch.full_like(gt_index, -1).scatter_reduce(1, gt_best_anchor, candidate, reduce="amax")  # [B, A]
        gt_index = torch.where(forced >= 0, forced, gt_index)
    return Match(gt_index, best_iou.clamp(min=0.0), iou)


def encode(
    boxes: Tensor,
    classes: Tensor,
    anchors: Tensor,
    threshold: float = 0.5,
    best_anchor: bool = True,
    num_classes: int | None = None,
    prior_scaling: tuple[float, ...] = PRIOR_SCALING,
) -> EncodedTargets:
    """Match a batch of GTs to default boxes and encode the training targets (DESIGN.md 1.3).

    Args:
        boxes: [B, G, 4] xyxy normalised; classes: [B, G] int64 with -1 = padding; anchors: [A, 4] cxcywh.
        threshold, best_anchor, num_classes: see :func:`match`. ``best_anchor=False`` reproduces the reference
            (threshold only, strict >, ties to the earlier GT).

    Returns:
        labels [B, A] int64 (0 = background), offsets [B, A, 4], scores [B, A] = best IoU with any GT.
    """
    matched = match(boxes, classes, anchors, threshold, best_anchor, num_classes)
    positive = matched.gt_index >= 0  # [B, A]
    index = matched.gt_index.clamp(min=0)
    if boxes.shape[1] == 0:
        labels = torch.zeros_like(matched.gt_index)
        return EncodedTargets(labels, boxes.new_zeros(*labels.shape, 4), matched.scores)
    labels = torch.where(positive, classes.to(torch.int64).gather(1, index), torch.zeros_like(index))
    matched_boxes = boxes.gather(1, index[:, :, None].expand(-1, -1, 4))  # [B, A, 4]
    offsets = encode_offsets(matched_boxes, anchors.to(boxes.dtype), prior_scaling)
    offsets = torch.where(positive[:, :, None], offsets, torch.zeros_like(offsets))
    return EncodedTargets(labels, offsets, matched.scores)
