"""Default boxes (anchors): the vectorised, cached generation of a layout's boxes.

The layouts themselves (:class:`AnchorLayout`, :data:`BUILTIN_LAYOUTS`, :func:`get_layout`) are data without torch
in ``core/layouts.py``.

DESIGN.md 1.1. Boxes come out in cxcywh normalised to [0, 1], ordered by layer, then row, then column, then box
within the cell: a square of side s_k, a square of side sqrt(s_k * s_k+1), then one box per aspect ratio r
(width s_k * sqrt(r), height s_k / sqrt(r)).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

from .layouts import AnchorLayout, get_layout


def _layer_boxes(layout: AnchorLayout, k: int) -> Tensor:
    """[f_k * f_k * boxes_per_cell, 4] cxcywh (float64) of layer ``k``."""
    f = layout.feature_maps[k]
    s_k = layout.sizes[k] / layout.image_size
    s_next = layout.sizes[k + 1] / layout.image_size
    wh = [(s_k, s_k), (math.sqrt(s_k * s_next),) * 2]
    wh += [(s_k * math.sqrt(r), s_k / math.sqrt(r)) for r in layout.aspect_ratios[k]]
    wh_t = torch.tensor(wh, dtype=torch.float64)  # [k, 2]
    if layout.clip:
        wh_t = wh_t.clamp(0.0, 1.0)
    scale = f if layout.steps is None else layout.image_size / layout.steps[k]
    centres = (torch.arange(f, dtype=torch.float64) + 0.5) / scale  # [f]
    cy, cx = torch.meshgrid(centres, centres, indexing="ij")  # [f, f]
    cells = torch.stack((cx, cy), dim=-1).reshape(-1, 1, 2)  # [f*f, 1, 2]
    boxes = torch.cat((cells.expand(-1, len(wh), 2), wh_t.expand(f * f, -1, 2)), dim=-1)  # [f*f, k, 4]
    return boxes.reshape(-1, 4)


@lru_cache(maxsize=32)
def _cached_boxes(layout: AnchorLayout, device: torch.device, dtype: torch.dtype) -> Tensor:
    boxes = torch.cat([_layer_boxes(layout, k) for k in range(layout.num_layers)], dim=0)
    return boxes.to(device=device, dtype=dtype)


def default_boxes(
    name: str | AnchorLayout = "ssd300",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Default boxes of a layout: Tensor[A, 4] cxcywh normalised, in layer, row, col, box order.

    The result is cached per (layout, device, dtype); treat it as read-only (clone before changing it).
    """
    layout = get_layout(name)
    return _cached_boxes(layout, torch.device(device or "cpu"), dtype)
