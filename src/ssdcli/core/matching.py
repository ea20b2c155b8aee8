"""Batched matching of ground truth to default boxes and target encoding (DESIGN.md 1.3).

Every image of a batch is matched at once: GTs are padded to [B, G, 4] and padding is marked by class -1.

The IoU of a batch is the one large tensor here (32 images x 15 GTs x 8,732 default boxes is 17 MB in float32), so
it is computed once, in place, and laid out [G, A, B]: both maxima (over GTs and over default boxes) then reduce
over an outer dimension with the batch contiguous, which is fast, and the rows of one axis's overlaps are
copied per default box from a table of its few distinct extents. Indices of maxima are looked up afterwards on
small tensors, so no [B, G, A] argmax is taken.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .boxes import axis_overlap, check_finite, check_tensor, check_xyxy, cxcywh_to_xyxy, iou_from_union_
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


#: Default boxes per block when looking up each GT's first highest-IoU default box (see _best_anchors).
_BLOCK = 64


def _distinct_extents(low: Tensor, high: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The distinct (low, high) pairs of [A] coordinates: low [U], high [U], and each input's pair index [A].

    Default boxes on grids share few extents per axis (372 distinct x extents of SSD300's 8,732 boxes), so the
    overlap along an axis is computed once per extent. Pairs are told apart by their bit patterns (exact).
    """
    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[low.element_size()]
    low_bits, high_bits = low.contiguous().view(bits).long(), high.contiguous().view(bits).long()
    if low.element_size() <= 4:  # both patterns fit one int64 key
        key = (low_bits << 32) | (high_bits & 0xFFFFFFFF)
    else:
        low_ids = torch.unique(low_bits, return_inverse=True)[1]
        high_values, high_ids = torch.unique(high_bits, return_inverse=True)
        key = low_ids * high_values.numel() + high_ids
    keys, index = torch.unique(key, return_inverse=True)  # index [A]
    first = torch.empty_like(keys).scatter_(0, index, torch.arange(low.numel(), device=low.device))  # [U]
    return low[first], high[first], index


def _union_needs_guard(gt_area: Tensor, anchor_area: Tensor) -> bool:
    """Whether union = (area_gt + area_anchor) - inter can fall below the dtype's smallest normal number or be NaN.

    With finite areas, GT areas >= 0 and default-box areas >= 4 * tiny, the union is at least half the default
    box's area and finite, so inter / union needs neither the clamp nor the zero fallback of the general formula.
    """
    tiny = torch.finfo(anchor_area.dtype).tiny
    bound = gt_area.amax() + anchor_area.amax()
    return not (bool(torch.isfinite(bound)) and float(anchor_area.amin()) >= 4 * tiny and float(gt_area.amin()) >= 0)


def _iou_gab(boxes: Tensor, anchors_xyxy: Tensor) -> Tensor:
    """IoU of GT boxes [B, G, 4] with default boxes [A, 4], both xyxy; returns [G, A, B].

    The same values as :func:`pairwise_iou` (the same operations in the same order on each element).
    """
    gts = boxes.permute(2, 1, 0).contiguous()  # [4, G, B]
    gx1, gy1, gx2, gy2 = (coordinate[:, None, :] for coordinate in gts)  # [G, 1, B] each
    gt_area = (gx2 - gx1) * (gy2 - gy1)  # [G, 1, B]
    anchor_area = (anchors_xyxy[:, 2] - anchors_xyxy[:, 0]) * (anchors_xyxy[:, 3] - anchors_xyxy[:, 1])  # [A]
    num_gt, batch, num_anchors = gts.shape[1], gts.shape[2], anchors_xyxy.shape[0]
    tables = []
    for low, high, g_low, g_high in ((0, 2, gx1, gx2), (1, 3, gy1, gy2)):
        a_low, a_high, index = _distinct_extents(anchors_xyxy[:, low], anchors_xyxy[:, high])
        table = boxes.new_empty(num_gt, a_low.numel(), batch)  # [G, U, B]
        axis_overlap(g_low, g_high, a_low[:, None], a_high[:, None], out=table)
        tables.append((table, index))
    inter = torch.index_select(tables[0][0], 1, tables[0][1])  # [G, A, B] width of the intersection for now
    union = torch.index_select(tables[1][0], 1, tables[1][1])  # [G, A, B] its height for now
    inter.mul_(union)
    torch.add(gt_area, anchor_area[:, None], out=union).sub_(inter)
    if _union_needs_guard(gt_area, anchor_area):
        return iou_from_union_(inter, union)
    return inter.div_(union)


def _best_anchors(iou: Tensor) -> tuple[Tensor, Tensor]:
    """Each GT's highest IoU over the default boxes and the first default box reaching it, from iou [G, A, B].

    Returns values [G, B] and indices [G, B]. The maximum is taken per block of default boxes; the first block
    reaching the GT's maximum, then the first default box within it, give the index without an argmax over A.
    """
    num_gt, num_anchors, batch = iou.shape
    whole = num_anchors // _BLOCK * _BLOCK
    parts = []
    if whole:
        parts.append(iou[:, :whole].view(num_gt, whole // _BLOCK, _BLOCK, batch).amax(dim=2))
    if whole < num_anchors:
        parts.append(iou[:, whole:].amax(dim=1, keepdim=True))
    block_max = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]  # [G, blocks, B]
    best = block_max.amax(dim=1)  # [G, B]
    block = (block_max == best[:, None, :]).to(torch.uint8).argmax(dim=1)  # [G, B]; argmax takes the first
    offsets = torch.arange(_BLOCK, device=iou.device)[None, :, None]
    index = (block[:, None, :] * _BLOCK + offsets).clamp_(max=num_anchors - 1)  # [G, BLOCK, B]
    within = (iou.gather(1, index) == best[:, None, :]).to(torch.uint8).argmax(dim=1)  # [G, B]
    return best, block * _BLOCK + within


def _assign(
    boxes: Tensor, classes: Tensor, anchors: Tensor, threshold: float, best_anchor: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """gt_index [B, A], scores [B, A] and iou [G', A, B] of the first G' GT slots (None if G' = 0).

    G' ends at the last slot that is a GT in any image; padding slots before it are matched as empty boxes
    (IoU 0), which changes no maximum that matters: scores are clamped at 0, a default box only takes a GT with
    IoU above the threshold (>= 0), and only valid GTs with IoU > 0 claim their best default box.
    """
    batch, _, _ = boxes.shape
    num_anchors = anchors.shape[0]
    valid = classes >= 1  # [B, G]
    slots = torch.arange(1, valid.shape[1] + 1, device=boxes.device)
    used = int((valid * slots).amax()) if valid.numel() else 0
    gt_index = torch.full((batch, num_anchors), -1, dtype=torch.int64, device=boxes.device)
    if used == 0:
        return gt_index, boxes.new_zeros(batch, num_anchors), None
    valid = valid[:, :used]
    gt_boxes = torch.where(valid[:, :, None], boxes[:, :used], boxes.new_zeros(()))  # [B, G', 4]
    iou = _iou_gab(gt_boxes, cxcywh_to_xyxy(anchors.to(boxes.dtype)))  # [G', A, B]
    best_iou = iou.amax(dim=0)  # [A, B]
    anchor_of, image_of = (best_iou > threshold).nonzero(as_tuple=True)  # [P] each
    column = iou[:, anchor_of, image_of]  # [G', P]
    best_gt = (column == best_iou[anchor_of, image_of]).to(torch.uint8).argmax(dim=0)  # first GT on ties
    gt_index[image_of, anchor_of] = best_gt
    if best_anchor:
        gt_best_iou, gt_best_anchor = _best_anchors(iou)  # [G', B] each
        forcible = valid & (gt_best_iou.t() > 0)  # [B, G']
        candidate = torch.arange(used, device=boxes.device).expand(batch, used)
        candidate = torch.where(forcible, candidate, torch.full_like(candidate, -1))
        forced = torch.full_like(gt_index, -1).scatter_reduce(1, gt_best_anchor.t(), candidate, reduce="amax")
        gt_index = torch.where(forced >= 0, forced, gt_index)  # [B, A]
    return gt_index, best_iou.t().contiguous().clamp_(min=0.0), iou


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
    gt_index, scores, iou_gab = _assign(boxes, classes, anchors, threshold, best_anchor)
    batch, num_gt, _ = boxes.shape
    iou = boxes.new_full((batch, num_gt, anchors.shape[0]), -1.0)  # [B, G, A]
    if iou_gab is not None:
        used = iou_gab.shape[0]
        iou[:, :used] = iou_gab.permute(2, 0, 1)
        iou[:, :used].masked_fill_(classes[:, :used, None] < 1, -1.0)
    return Match(gt_index, scores, iou)


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
    _check_inputs(boxes, classes, anchors, threshold, num_classes)
    gt_index, scores, _ = _assign(boxes, classes, anchors, threshold, best_anchor)  # [B, A] each
    image_of, anchor_of = (gt_index >= 0).nonzero(as_tuple=True)  # [P] each
    gt_of = gt_index[image_of, anchor_of]  # [P]
    labels = torch.zeros_like(gt_index)
    labels[image_of, anchor_of] = classes[image_of, gt_of].to(torch.int64)
    offsets = boxes.new_zeros(*gt_index.shape, 4)  # [B, A, 4]
    anchors = anchors.to(boxes.dtype)
    offsets[image_of, anchor_of] = encode_offsets(boxes[image_of, gt_of], anchors[anchor_of], prior_scaling)
    return EncodedTargets(labels, offsets, scores)
