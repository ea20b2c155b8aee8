"""Decoding, per-class score filtering and NMS for a whole batch at once (DESIGN.md 1.5)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .boxes import check_tensor, has_area
from .coder import PRIOR_SCALING, decode
from .nms import nms_for_device


@dataclass(frozen=True)
class PostprocessSettings:
    """The settings of :func:`postprocess` a model's detections are made with.

    Attributes:
        score_threshold: keep class scores strictly above this.
        iou_threshold: NMS IoU, per class.
        top_k: detections kept per image after NMS.
        pre_nms_top_k: candidates kept per class and image before NMS.
    """

    score_threshold: float = 0.01
    iou_threshold: float = 0.45
    top_k: int = 200
    pre_nms_top_k: int = 400


#: ssdcli's evaluation settings (DESIGN.md 1.5), also those of torchvision's ssd300_vgg16.
EVAL_SETTINGS = PostprocessSettings()


def postprocess(
    conf: Tensor,
    loc: Tensor,
    anchors: Tensor,
    settings: PostprocessSettings = EVAL_SETTINGS,
    prior_scaling: tuple[float, ...] = PRIOR_SCALING,
) -> list[dict[str, Tensor]]:
    """Detections of a batch from raw head outputs.

    Args:
        conf: [B, A, C] raw class logits; loc: [B, A, 4] raw offsets; anchors: [A, 4] cxcywh.
        settings: score threshold, NMS IoU, detections per image and candidates per class before NMS (see
            :class:`PostprocessSettings`; ssdcli's evaluation settings by default).

    Decoded boxes are clipped to [0, 1]; a box left with zero width or height (it lay wholly outside the image)
    is dropped before the candidates are chosen. NMS is the implementation :func:`~ssdcli.core.nms.nms_for_device`
    picks for the inputs' device; both give the same detections.

    Returns:
        One dict per image: "boxes" [K, 4] xyxy normalised and clipped to [0, 1], each with positive width and
        height, "scores" [K], "labels" [K] int64 in 1..C-1, sorted by decreasing score.
    """
    check_tensor("conf", conf, 3)
    check_tensor("loc", loc, 3, 4)
    if loc.shape[:2] != conf.shape[:2] or anchors.shape != (conf.shape[1], 4):
        raise ValueError(
            f"loc/anchors: expected shapes [B, A, 4] and [A, 4] with B, A = {tuple(conf.shape[:2])}, "
            f"got {tuple(loc.shape)} and {tuple(anchors.shape)}"
        )
    batch, num_anchors, num_classes = conf.shape
    scores = torch.softmax(conf.float(), dim=-1)[:, :, 1:]  # [B, A, C-1]
    boxes = decode(loc.float(), anchors.float(), prior_scaling).clamp_(0.0, 1.0)  # [B, A, 4]
    # A box wholly outside the image clips to zero width or height: it is no detection. Scored -1, it is no
    # candidate (below any threshold), so it takes no pre-NMS place and suppresses nothing.
    scores = scores.masked_fill(~has_area(boxes).unsqueeze(-1), -1.0)
    image_index, anchor_index, class_index, cand_scores = _candidates(
        scores, settings.score_threshold, settings.pre_nms_top_k
    )
    cand_boxes = boxes[image_index, anchor_index]  # [N, 4]
    group = image_index * (num_classes - 1) + class_index  # NMS within (image, class)
    kept = nms_for_device(conf.device.type)(cand_boxes, cand_scores, group, settings.iou_threshold)  # [K]
    by_score = torch.sort(cand_scores[kept], descending=True, stable=True).indices
    kept = kept[by_score]
    kept = kept[torch.sort(image_index[kept], stable=True).indices]  # grouped by image, by decreasing score
    kept_image = image_index[kept]
    counts = torch.bincount(kept_image, minlength=batch)  # [B]
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(kept.numel(), device=conf.device) - starts[kept_image]
    kept = kept[rank < settings.top_k]
    per_image = torch.bincount(image_index[kept], minlength=batch).tolist()
    out_boxes = torch.split(cand_boxes[kept], per_image)
    out_scores = torch.split(cand_scores[kept], per_image)
    out_labels = torch.split(class_index[kept] + 1, per_image)
    return [{"boxes": b, "scores": s, "labels": c} for b, s, c in zip(out_boxes, out_scores, out_labels)]


def _candidates(scores: Tensor, score_threshold: float, pre_nms_top_k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The candidates of NMS: per (image, class), the class scores above the threshold, at most the highest
    pre_nms_top_k of them.

    scores: [B, A, C-1] (background left out). Returns image, default box and class (0-based, background left
    out) indices [N] and scores [N]. Thresholding comes first, on the default boxes whose best class passes, so
    a trained model's few candidates are handled alone; only when some (image, class) has more than
    pre_nms_top_k candidates is a top-k taken over every default box.
    """
    batch, num_anchors, num_classes = scores.shape
    image_of, anchor_of = (scores.amax(dim=2) > score_threshold).nonzero(as_tuple=True)  # [P] each
    # With more such default boxes than all groups may keep together, some group is over pre_nms_top_k: go
    # straight to the top-k, without listing every (default box, class) above the threshold.
    if image_of.numel() <= batch * num_classes * pre_nms_top_k:
        row, class_index = (scores[image_of, anchor_of] > score_threshold).nonzero(as_tuple=True)  # [N] each
        image_index, anchor_index = image_of[row], anchor_of[row]
        counts = torch.bincount(image_index * num_classes + class_index, minlength=1)
        if int(counts.max()) <= pre_nms_top_k:
            return image_index, anchor_index, class_index, scores[image_index, anchor_index, class_index]
    top_scores, top_anchor = scores.transpose(1, 2).contiguous().topk(pre_nms_top_k, dim=2)  # [B, C-1, k]
    image_index, class_index, slot = (top_scores > score_threshold).nonzero(as_tuple=True)  # [N] each
    anchor_index = top_anchor[image_index, class_index, slot]
    return image_index, anchor_index, class_index, top_scores[image_index, class_index, slot]
