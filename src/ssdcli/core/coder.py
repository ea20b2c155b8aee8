"""Offset encoding of boxes against default boxes and its inverse (DESIGN.md 1.3.4 and 1.5)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .boxes import check_tensor, cxcywh_to_xyxy, xyxy_to_cxcywh

#: Variances of the SSD offsets: (cx, cy, w, h) are divided by these after encoding.
PRIOR_SCALING: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
#: Largest log-scale change decode accepts (torchvision's ``BoxCoder.bbox_xform_clip``), so exp() stays finite.
LOG_SCALE_CLIP = math.log(1000.0 / 16)


def encode_offsets(
    boxes_xyxy: Tensor, anchors_cxcywh: Tensor, prior_scaling: tuple[float, ...] = PRIOR_SCALING
) -> Tensor:
    """Offsets of boxes [..., 4] xyxy relative to default boxes [..., 4] cxcywh (broadcast); returns [..., 4].

    t_cx = (g_cx - d_cx) / d_w / 0.1, t_cy likewise, t_w = log(g_w / d_w) / 0.2, t_h likewise.
    """
    gt = xyxy_to_cxcywh(boxes_xyxy)
    scale = anchors_cxcywh.new_tensor(prior_scaling)
    centre = (gt[..., :2] - anchors_cxcywh[..., :2]) / anchors_cxcywh[..., 2:] / scale[:2]
    size = torch.log(gt[..., 2:] / anchors_cxcywh[..., 2:]) / scale[2:]
    return torch.cat((centre, size), dim=-1)


def decode(offsets: Tensor, anchors: Tensor, prior_scaling: tuple[float, ...] = PRIOR_SCALING) -> Tensor:
    """Boxes from offsets [B, A, 4] (or [A, 4]) and default boxes [A, 4] cxcywh; returns [B, A, 4] xyxy normalised.

    The log-scale terms are clamped at log(1000/16) as torchvision does, so large offsets cannot overflow.
    """
    check_tensor("anchors", anchors, 2, 4)
    if not isinstance(offsets, Tensor) or offsets.dim() not in (2, 3) or offsets.shape[-2:] != anchors.shape:
        shape = tuple(offsets.shape) if isinstance(offsets, Tensor) else type(offsets).__name__
        raise ValueError(f"offsets: expected shape [B, {anchors.shape[0]}, 4] to match anchors, got {shape}")
    anchors = anchors.to(offsets.dtype)
    scale = offsets.new_tensor(prior_scaling)
    centre = offsets[..., :2] * scale[:2] * anchors[:, 2:] + anchors[:, :2]
    size = torch.exp((offsets[..., 2:] * scale[2:]).clamp(max=LOG_SCALE_CLIP)) * anchors[:, 2:]
    return cxcywh_to_xyxy(torch.cat((centre, size), dim=-1))
