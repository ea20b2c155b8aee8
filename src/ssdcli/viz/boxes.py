"""Boxes and labels on images, drawn through ``torchvision.utils.draw_bounding_boxes``."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from PIL import ImageFont
from torchvision.utils import draw_bounding_boxes

from ssdcli.viz.colours import Colour, class_colour


def line_width(height: int, width: int) -> int:
    """Box outline width in pixels for an image of ``height`` x ``width``: 1 px per 300 px of the shorter side."""
    return max(1, round(min(height, width) / 300))


@lru_cache(maxsize=1)
def _label_font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """The font ``draw_bounding_boxes`` writes labels in (PIL's default), loaded once per process."""
    return ImageFont.load_default()


def _label_anchors(boxes: torch.Tensor, labels: Sequence[str], height: int, width: int) -> torch.Tensor:
    """Zero-size boxes [N, 2 x 2] at which ``draw_bounding_boxes`` puts each label so that its tag sits just above
    its box [N, 4] (below the image's top edge, left of its right edge)."""
    font = _label_font()
    extents = torch.tensor([font.getbbox(label)[2:] for label in labels], dtype=torch.float64).reshape(-1, 2)
    x = torch.minimum(boxes[:, 0], (width - extents[:, 0] - 3).clamp(min=0)).clamp(min=0)
    y = (boxes[:, 1] - extents[:, 1] - 3).clamp(min=0)
    return torch.stack([x, y, x, y], dim=1)


def draw_boxes(
    image_bgr: np.ndarray,
    boxes: np.ndarray,
    colours: Sequence[Colour],
    labels: Sequence[str] | None = None,
    width: int = 1,
) -> np.ndarray:
    """A copy of ``image_bgr`` [H, W, 3] uint8 with ``boxes`` [N, 4] xyxy pixels drawn in ``colours`` (N RGB
    colours), ``width`` px inside each box's edge; ``labels`` (N texts) are written in black on a tag of the box's
    colour just above its top-left corner. Coordinates are rounded to whole pixels."""
    boxes_t = torch.as_tensor(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)).round()
    if len(boxes_t) == 0:
        return image_bgr.copy()
    rgb = torch.from_numpy(np.ascontiguousarray(image_bgr[..., ::-1])).permute(2, 0, 1)
    drawn = draw_bounding_boxes(rgb, boxes_t, colors=list(colours), width=width)
    if labels is not None:
        anchors = _label_anchors(boxes_t, labels, *image_bgr.shape[:2])
        drawn = draw_bounding_boxes(drawn, anchors, list(labels), list(colours), width=0, fill_labels=True)
    return np.ascontiguousarray(drawn.permute(1, 2, 0).numpy()[..., ::-1])


def draw_detections(image_bgr: np.ndarray, boxes: np.ndarray, scores: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """A copy of ``image_bgr`` [H, W, 3] with detections ``boxes`` [K, 4] xyxy pixels, ``scores`` [K] and class
    ``names`` (K) drawn in their class colours and labelled ``name score``."""
    labels = [f"{name} {float(score):.2f}" for name, score in zip(names, scores)]
    colours = [class_colour(name) for name in names]
    return draw_boxes(image_bgr, boxes, colours, labels, line_width(*image_bgr.shape[:2]))
