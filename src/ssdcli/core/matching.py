"""Batched matching of ground truth to default boxes and target encoding (DESIGN.md 1.3).

Every image of a batch is matched at once: GTs are padded to [B, G, 4] and padding is marked by class -1.

The IoU of a batch is the one large quantity here (32 images x 15 GTs x 8,732 default boxes is 17 MB in float32).
``encode`` never builds it whole: it is computed in chunks of default boxes that stay in cache, laid out
[a, G, B] so that both maxima (over GTs and over default boxes) reduce with the batch contiguous, and reduced at
once. The overlap along each axis is copied per default box, as whole [G, B] rows, from a table over the layout's
few distinct extents.
Indices of maxima are looked up afterwards, where needed, on small tensors: max-with-index reductions over a
whole chunk cost ten times a plain maximum on CPU.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .boxes import (
    axis_overlap,
    check_finite,
    check_tensor,
    check_xyxy,
    cxcywh_to_xyxy,
    iou_from_union_,
    pairwise_iou,
)
from .coder import PRIOR_SCALING, encode_offsets


class Match(NamedTuple):
    """Which GT each default box is assigned to.

    gt_index: [B, A] int64, index into the image's GTs, -1 for background.
    scores: [B, A] best IoU of the default box with any valid GT (0 where the image has none).
    iou: [B, G, A] IoU of every GT with every default box (-1 for padding GTs); None unless asked for
        (``match(..., with_iou=True)``), as it is the one large quantity.
    """

    gt_index: Tensor
    scores: Tensor
    iou: Tensor | None


class EncodedTargets(NamedTuple):
    """Training targets of a batch.

    labels: [B, A] int64, 0 = background, else the matched GT's class.
    offsets: [B, A, 4] encoded offsets of the matched GT (0 for background).
    scores: [B, A] best IoU of each default box with any valid GT.
    """

    labels: Tensor
    offsets: Tensor
    scores: Tensor


class DefaultBoxGeometry(NamedTuple):
    """What matching needs of a layout's default boxes, computed once per layout (:func:`default_box_geometry`)
    rather than at every training step.

    cxcywh, xyxy: [A, 4]; area: [A]; x_low, x_high, y_low, y_high: [U] the distinct extents along each axis;
    x_index, y_index: [A] each default box's extent; union_safe: whether every area is finite and at least four
    times the dtype's smallest normal number, so that with GT boxes inside [0, 1] the IoU needs no zero-union
    guard (see :func:`_union_needs_guard`), known without looking at the GTs.
    """

    cxcywh: Tensor
    xyxy: Tensor
    area: Tensor
    x_low: Tensor
    x_high: Tensor
    x_index: Tensor
    y_low: Tensor
    y_high: Tensor
    y_index: Tensor
    union_safe: bool = False


def default_box_geometry(anchors: Tensor, dtype: torch.dtype | None = None) -> DefaultBoxGeometry:
    """The geometry of default boxes [A, 4] cxcywh (in ``dtype``, default theirs), checked once."""
    check_tensor("anchors", anchors, 2, 4)
    check_finite("anchors", anchors)
    cxcywh = anchors.to(dtype or anchors.dtype)
    xyxy = cxcywh_to_xyxy(cxcywh)
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])  # [A]
    x_low, x_high, x_index = _distinct_extents(xyxy[:, 0], xyxy[:, 2])
    y_low, y_high, y_index = _distinct_extents(xyxy[:, 1], xyxy[:, 3])
    tiny = torch.finfo(area.dtype).tiny
    union_safe = bool(torch.isfinite(area).all()) and float(area.amin()) >= 4 * tiny if area.numel() else True
    return DefaultBoxGeometry(cxcywh, xyxy, area, x_low, x_high, x_index, y_low, y_high, y_index, union_safe)


def _geometry(anchors: Tensor | DefaultBoxGeometry, dtype: torch.dtype) -> DefaultBoxGeometry:
    if isinstance(anchors, DefaultBoxGeometry):
        return anchors if anchors.xyxy.dtype == dtype else default_box_geometry(anchors.cxcywh, dtype)
    return default_box_geometry(anchors, dtype)


def _check_inputs(boxes: Tensor, classes: Tensor, threshold: float, num_classes: int | None) -> None:
    check_tensor("boxes", boxes, 3, 4)
    check_tensor("classes", classes, 2)
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


#: Entries of one chunk of the IoU, [a, G, B] (a default boxes of a chunk): about 2 MB of float32, so that the
#: dozen passes over a chunk run in cache. The full [G, A, B] IoU of a batch is never built in ``encode``.
_CHUNK_ENTRIES = 1 << 19
#: Default boxes per block: each GT slot's best IoU is kept per block, and its first default box reaching the
#: maximum is looked up in one block afterwards.
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


class _Tables(NamedTuple):
    """The IoU of GT slots with default boxes, in factors: inter = x_table[g, x_index[a], b] *
    y_table[g, y_index[a], b], union = gt_area[g, b] + anchor_area[a] - inter.

    x_table, y_table: [U, G, B] overlaps along an axis with each distinct extent; x_index, y_index: [A];
    gt_area: [1, G, B]; anchor_area: [A]; guard: whether inter / union needs the zero-union fallback.
    """

    x_table: Tensor
    y_table: Tensor
    x_index: Tensor
    y_index: Tensor
    gt_area: Tensor
    anchor_area: Tensor
    guard: bool


def _tables(boxes: Tensor, geometry: DefaultBoxGeometry, checked: bool) -> _Tables:
    """The factors of the IoU of GT boxes [B, G, 4] (xyxy) with the default boxes of ``geometry``. ``checked``:
    the GTs' areas are looked at to decide whether the IoU needs its guard; otherwise (GTs in [0, 1], checked
    where they entered) the geometry's :attr:`~DefaultBoxGeometry.union_safe` decides, with no host
    synchronisation."""
    gts = boxes.permute(2, 1, 0).contiguous()  # [4, G, B]
    gx1, gy1, gx2, gy2 = (coordinate[None] for coordinate in gts)  # [1, G, B] each
    gt_area = (gx2 - gx1) * (gy2 - gy1)  # [1, G, B]
    factors = []
    axes = ((geometry.x_low, geometry.x_high, gx1, gx2), (geometry.y_low, geometry.y_high, gy1, gy2))
    for a_low, a_high, g_low, g_high in axes:
        table = boxes.new_empty(a_low.numel(), gts.shape[1], gts.shape[2])  # [U, G, B]
        factors.append(axis_overlap(g_low, g_high, a_low[:, None, None], a_high[:, None, None], out=table))
    guard = _union_needs_guard(gt_area, geometry.area) if checked else not geometry.union_safe
    return _Tables(factors[0], factors[1], geometry.x_index, geometry.y_index, gt_area, geometry.area, guard)


def _chunk_iou(tables: _Tables, start: int, stop: int, inter: Tensor, union: Tensor) -> Tensor:
    """IoU [a, G, B] of default boxes start..stop-1 with every GT slot, written into ``inter`` (``union`` is
    clobbered); the operations of :func:`pairwise_iou` in the same order, so the values are the same."""
    torch.index_select(tables.x_table, 0, tables.x_index[start:stop], out=inter)
    torch.index_select(tables.y_table, 0, tables.y_index[start:stop], out=union)
    inter.mul_(union)
    torch.add(tables.gt_area, tables.anchor_area[start:stop, None, None], out=union).sub_(inter)
    return iou_from_union_(inter, union) if tables.guard else inter.div_(union)


def _entry_iou(tables: _Tables, anchor: Tensor, gt: Tensor, image: Tensor) -> Tensor:
    """IoU of single (default box, GT slot, image) entries, the three index tensors broadcast together; the
    operations of :func:`_chunk_iou` in the same order, so equal IoUs compare equal to the chunks' values."""
    inter = tables.x_table[tables.x_index[anchor], gt, image] * tables.y_table[tables.y_index[anchor], gt, image]
    union = (tables.gt_area[0, gt, image] + tables.anchor_area[anchor]).sub_(inter)
    return iou_from_union_(inter, union) if tables.guard else inter.div_(union)


def _first_anchor_reaching(tables: _Tables, best: Tensor, start: Tensor, width: int) -> Tensor:
    """For each GT slot, the first default box in start..start+width-1 whose IoU equals best.

    best, start: [G, B]. The IoU is recomputed for those default boxes only. Returns [G, B] indices into the
    default boxes.
    """
    num_anchors = tables.anchor_area.shape[0]
    slots, batch = best.shape
    index = (start[:, :, None] + torch.arange(width, device=start.device)).clamp_(max=num_anchors - 1)  # [G, B, a]
    gt = torch.arange(slots, device=start.device)[:, None, None]  # [G, 1, 1]
    image = torch.arange(batch, device=start.device)[None, :, None]  # [1, B, 1]
    iou = _entry_iou(tables, index, gt, image)  # [G, B, a]
    return index.gather(2, _first_equal(iou, best[:, :, None], dim=2)[:, :, None])[:, :, 0]


def _first_equal(iou: Tensor, best: Tensor, dim: int) -> Tensor:
    """Index along ``dim`` of the first entry of ``iou`` equal to ``best`` (broadcast). The recomputed IoU equals
    the chunks' bit for bit by construction; should an entry ever miss (no value equal), the index of the
    largest entry is taken instead, which is where ``best`` came from, so a miss never picks index 0 silently."""
    equal = iou == best
    first = equal.to(torch.uint8).argmax(dim=dim)
    return torch.where(equal.any(dim=dim), first, iou.argmax(dim=dim))


def _forced_matches(forcible: Tensor, best_anchor: Tensor) -> Tensor:
    """Which GT slots claim their best default box: [G, B] bool, at most one slot per claimed box.

    forcible, best_anchor: [G, B]. Where several GTs of an image pick the same default box, the later GT keeps it
    (as torchvision's indexed assignment does).
    """
    same = best_anchor[:, None, :] == best_anchor[None, :, :]  # [G, G', B]
    later = torch.ones_like(same[:, :, 0]).triu_(1)[:, :, None]  # [G, G', 1]: G' after G
    overtaken = (same & later & forcible[None, :, :]).any(dim=1)  # [G, B]
    return forcible & ~overtaken


class _Pairs(NamedTuple):
    """Matched (image, default box, GT slot) triples, [P] int64 each, and where each writes its target: ``flat``
    = image * A + default box, or B * A (a slot past the batch's [B, A] targets, dropped afterwards) for a triple
    that assigns nothing. Fixed-size lists with such no-op entries need no host synchronisation to build."""

    image: Tensor
    anchor: Tensor
    gt: Tensor
    flat: Tensor


class _Assignment(NamedTuple):
    """The result of matching a batch. A default box in both lists takes its GT from ``forced``.

    scores: [B, A] best IoU of each default box with any GT (0 where none overlaps).
    by_threshold: default boxes whose best IoU is above the threshold, with the first GT slot reaching it.
    forced: the best default box of each GT that claims one (the best-anchor rule; empty without it).
    """

    scores: Tensor
    by_threshold: _Pairs
    forced: _Pairs


def _first_gt_reaching(tables: _Tables, best: Tensor, image: Tensor, anchor: Tensor) -> Tensor:
    """For each (image, default box) pair [P], the first GT slot whose IoU equals best [P], the IoU recomputed
    for those pairs only. Returns [P]."""
    gt = torch.arange(tables.gt_area.shape[1], device=best.device)  # [G]
    iou = _entry_iou(tables, anchor[:, None], gt, image[:, None])  # [P, G]
    return _first_equal(iou, best[:, None], dim=1)


def _assign(
    boxes: Tensor, classes: Tensor, geometry: DefaultBoxGeometry, threshold: float, best_anchor: bool, checked: bool
) -> _Assignment:
    """Match a batch: each default box's best IoU, the default boxes above the threshold and the forced matches.

    The IoU is computed in chunks of default boxes laid out [a, G, B] (the batch contiguous) and reduced at
    once: each default box's best IoU and each GT slot's best IoU per block of default boxes. Max-with-index
    reductions are slow on CPU, so indices are looked up afterwards, where they are needed, on few entries.
    Padding slots are matched as empty boxes (IoU 0), which changes no maximum that matters: scores are clamped
    at 0, a default box only takes a GT with IoU above the threshold (>= 0), and only valid GTs with IoU > 0
    claim their best default box. One host synchronisation: the number of default boxes above the threshold.
    """
    batch, used = classes.shape
    num_anchors = geometry.xyxy.shape[0]
    valid = classes >= 1  # [B, G]
    none = torch.zeros(0, dtype=torch.int64, device=boxes.device)
    if used == 0 or batch == 0:
        empty = _Pairs(none, none, none, none)
        return _Assignment(boxes.new_zeros(batch, num_anchors), empty, empty)
    gt_boxes = torch.where(valid[:, :, None], boxes, boxes.new_zeros(()))  # [B, G, 4]
    tables = _tables(gt_boxes, geometry, checked)
    step = max(1, _CHUNK_ENTRIES // (used * batch * _BLOCK)) * _BLOCK  # a whole number of blocks
    inter = boxes.new_empty(min(step, num_anchors), used, batch)  # [a, G', B], reused
    union = torch.empty_like(inter)
    scores = boxes.new_empty(batch, num_anchors)  # [B, A]
    block_best = boxes.new_empty(-(-num_anchors // _BLOCK), used, batch)  # [blocks, G', B]
    for start in range(0, num_anchors, step):
        stop = min(start + step, num_anchors)
        iou = _chunk_iou(tables, start, stop, inter[: stop - start], union[: stop - start])  # [a, G', B]
        scores[:, start:stop] = torch.amax(iou, dim=1).t()  # transposed while the chunk is in cache
        whole, first_block = (stop - start) // _BLOCK, start // _BLOCK
        if whole:
            blocks = iou[: whole * _BLOCK].view(whole, _BLOCK, used, batch)
            block_best[first_block : first_block + whole] = blocks.amax(dim=1)
        if whole * _BLOCK < stop - start:
            block_best[first_block + whole] = iou[whole * _BLOCK :].amax(dim=0)
    image, anchor = (scores > threshold).nonzero(as_tuple=True)  # [P] each
    gt = _first_gt_reaching(tables, scores[image, anchor], image, anchor)
    by_threshold = _Pairs(image, anchor, gt, image * num_anchors + anchor)
    forced = _Pairs(none, none, none, none)
    if best_anchor:
        gt_best_iou = block_best.amax(dim=0)  # [G, B]
        first = (block_best == gt_best_iou[None]).to(torch.uint8).argmax(dim=0)  # [G, B] first block
        gt_best_anchor = _first_anchor_reaching(tables, gt_best_iou, first * _BLOCK, _BLOCK)  # [G, B]
        claims = _forced_matches(valid.t() & (gt_best_iou > 0), gt_best_anchor)  # [G, B]
        gt_slot = torch.arange(used, device=boxes.device)[:, None].expand(used, batch).reshape(-1)  # [G * B]
        image = torch.arange(batch, device=boxes.device)[None, :].expand(used, batch).reshape(-1)
        anchor = gt_best_anchor.reshape(-1)
        flat = torch.where(claims.reshape(-1), image * num_anchors + anchor, batch * num_anchors)
        forced = _Pairs(image, anchor, gt_slot, flat)
    return _Assignment(scores.clamp_(min=0.0), by_threshold, forced)


def match(
    boxes: Tensor,
    classes: Tensor,
    anchors: Tensor | DefaultBoxGeometry,
    threshold: float = 0.5,
    best_anchor: bool = True,
    num_classes: int | None = None,
    with_iou: bool = False,
    checked: bool = True,
) -> Match:
    """Assign each default box to at most one GT, for a whole batch at once.

    Args:
        boxes: [B, G, 4] xyxy normalised GT boxes.
        classes: [B, G] int64 GT classes (1..C-1), -1 marks padding.
        anchors: [A, 4] cxcywh default boxes, or their :func:`default_box_geometry` (computed once per layout).
        threshold: a default box takes its highest-IoU GT if that IoU is > threshold (strictly); ties go to the
            earlier GT (the reference rule).
        best_anchor: additionally give every GT its own highest-IoU default box, even below the threshold (the
            SSD paper, torchvision). If several GTs pick the same default box, the later GT keeps it (as
            torchvision's indexed assignment does). A GT overlapping no default box at all is left unmatched.
        num_classes: if given, classes must be < num_classes.
        with_iou: also return the full [B, G, A] IoU (for reports; matching itself never builds it).
        checked: see :func:`encode`.
    """
    if checked:
        _check_inputs(boxes, classes, threshold, num_classes)
    geometry = _geometry(anchors, boxes.dtype)
    assigned = _assign(boxes, classes, geometry, threshold, best_anchor, checked)
    batch, num_anchors = assigned.scores.shape
    gt_index = torch.full((batch * num_anchors + 1,), -1, dtype=torch.int64, device=boxes.device)  # [B * A + 1]
    for pairs in (assigned.by_threshold, assigned.forced):  # forced matches last: they win
        gt_index[pairs.flat] = pairs.gt
    gt_index = gt_index[:-1].view(batch, num_anchors)  # [B, A]
    iou = None
    if with_iou:
        iou = pairwise_iou(boxes, geometry.xyxy)  # [B, G, A]
        iou.masked_fill_(classes[:, :, None] < 1, -1.0)
    return Match(gt_index, assigned.scores, iou)


def encode(
    boxes: Tensor,
    classes: Tensor,
    anchors: Tensor | DefaultBoxGeometry,
    threshold: float = 0.5,
    best_anchor: bool = True,
    num_classes: int | None = None,
    prior_scaling: tuple[float, ...] = PRIOR_SCALING,
    checked: bool = True,
) -> EncodedTargets:
    """Match a batch of GTs to default boxes and encode the training targets (DESIGN.md 1.3).

    Args:
        boxes: [B, G, 4] xyxy normalised; classes: [B, G] int64 with -1 = padding; anchors: [A, 4] cxcywh, or
            their :func:`default_box_geometry` (computed once per layout: a training loop's choice).
        threshold, best_anchor, num_classes: see :func:`match`. ``best_anchor=False`` reproduces the reference
            (threshold only, strict >, ties to the earlier GT).
        checked: check the inputs first (shapes, dtypes, class range, finite and ordered boxes: a few host
            synchronisations). ``False`` is for a training loop whose batches were checked where they entered
            (:func:`ssdcli.data.collate.collate_detections`): boxes finite, ordered and inside [0, 1], classes
            1..C-1 or -1; ``anchors`` then best given as their geometry. It leaves one host synchronisation (the
            number of default boxes above the threshold).

    Returns:
        labels [B, A] int64 (0 = background), offsets [B, A, 4], scores [B, A] = best IoU with any GT.
    """
    if checked:
        _check_inputs(boxes, classes, threshold, num_classes)
    geometry = _geometry(anchors, boxes.dtype)
    assigned = _assign(boxes, classes, geometry, threshold, best_anchor, checked)
    batch, num_anchors = assigned.scores.shape
    labels = torch.zeros(batch * num_anchors + 1, dtype=torch.int64, device=boxes.device)  # [B * A + 1]
    offsets = boxes.new_zeros(batch * num_anchors + 1, 4)  # [B * A + 1, 4]
    anchors = geometry.cxcywh
    for pairs in (assigned.by_threshold, assigned.forced):  # forced matches last: they win
        labels[pairs.flat] = classes[pairs.image, pairs.gt].to(torch.int64)
        matched = boxes[pairs.image, pairs.gt]  # [P, 4]
        offsets[pairs.flat] = encode_offsets(matched, anchors[pairs.anchor], prior_scaling)
    labels = labels[:-1].view(batch, num_anchors)  # [B, A]
    offsets = offsets[:-1].view(batch, num_anchors, 4)  # [B, A, 4]
    return EncodedTargets(labels, offsets, assigned.scores)
