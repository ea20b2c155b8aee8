"""Decoding, per-class score filtering and NMS for a whole batch at once (DESIGN.md 1.5)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from .boxes import check_tensor
from .coder import PRIOR_SCALING, decode


def postprocess(
    conf: Tensor,
    loc: Tensor,
    anchors: Tensor,
    score_threshold: float = 0.01,
    iou_threshold: float = 0.45,
    top_k: int = 200,
    pre_nms_top_k: int = 400,
    prior_scaling: tuple[float, ...] = PRIOR_SCALING,
) -> list[dict[str, Tensor]]:
    """Detections of a batch from raw head outputs.

    Args:
        conf: [B, A, C] raw class logits; loc: [B, A, 4] raw offsets; anchors: [A, 4] cxcywh.
        score_threshold: keep class scores strictly above this.
        iou_threshold: NMS IoU, per class.
        top_k: detections kept per image after NMS.
        pre_nms_top_k: candidates kept per class and image before NMS.

    Returns:
        One dict per image: "boxes" [K, 4] xyxy normalised and clipped to [0, 1], "scores" [K], "labels" [K]
        int64 in 1..C-1, sorted by decreasing score.
    """
    check_tensor("conf", conf, 3)
    check_tensor("loc", loc, 3, 4)
    if loc.shape[:2] != conf.shape[:2] or anchors.shape != (conf.shape[1], 4):
        raise ValueError(
            f"loc/anchors: expected shapes [B, A, 4] and [A, 4] with B, A = {tuple(conf.shape[:2])}, "
            f"got {tuple(loc.shape)} and {tuple(anchors.shape)}"
        )
    batch, num_anchors, num_classes = conf.shape
    scores = torch.softmax(conf.float(), dim=-1)[:, :, 1:].transpose(1, 2)  # [B, C-1, A]
    boxes = decode(loc.float(), anchors.float(), prior_scaling).clamp_(0.0, 1.0)  # [B, A, 4]
    k = min(pre_nms_top_k, num_anchors)
    top_scores, top_anchor = scores.topk(k, dim=2)  # [B, C-1, k]
    keep = top_scores > score_threshold
    image_index, class_index, slot = keep.nonzero(as_tuple=True)  # [N] each
    cand_scores = top_scores[image_index, class_index, slot]
    cand_anchor = top_anchor[image_index, class_index, slot]
    cand_boxes = boxes[image_index, cand_anchor]  # [N, 4]
    group = image_index * num_classes + class_index  # NMS within (image, class)
    # batched_nms may shift each group's boxes by group * (max coordinate + 1); with up to 2 * B * C added to [0, 1]
    # coordinates, float32 would lose up to 1e-3 of IoU and make decisions depend on the image's place in the
    # batch. float64 keeps the shifted boxes exact to ~1e-12.
    kept = batched_nms(cand_boxes.double(), cand_scores.double(), group, iou_threshold)  # by decreasing score
    kept = kept[torch.sort(image_index[kept], stable=True).indices]  # grouped by image, still by score
    kept_image = image_index[kept]
    counts = torch.bincount(kept_image, minlength=batch)  # [B]
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(kept.numel(), device=conf.device) - starts[kept_image]
    kept = kept[rank < top_k]
    per_image = torch.bincount(image_index[kept], minlength=batch).tolist()
    out_boxes = cand_boxes[kept].split(per_image)
    out_scores = cand_scores[kept].split(per_image)
    out_labels = (class_index[kept] + 1).split(per_image)
    return [{"boxes": b, "scores": s, "labels": l} for b, s, l in zip(out_boxes, out_scores, out_labels)]
