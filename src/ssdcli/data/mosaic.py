"""Mosaic augmentation at the network's scale: four training images, each resized to the S x S input as inference
resizes it, laid out 2 x 2 on a 2S x 2S canvas, and an S x S window of the canvas at a random offset taken as one
sample. Every object keeps the size it has at inference (no shrinking, unlike a 2 x 2 grid of S/2 images), and
a sample shows parts of up to four scenes, so small sets give more varied context per step (YOLOv4's mosaic). An
object cut by the window is kept, clipped, while at least ``MIN_VISIBLE`` of its area and 2 px of each side
remain (the rule of Ultralytics' box candidates), so that a half-visible object is not taught as background."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

#: The least share of an object's area (at the input's scale) that must remain in the window for it to be kept.
MIN_VISIBLE = 0.1
#: The least width and height, in pixels of the input, of a kept object.
MIN_SIDE = 2.0


@dataclass(frozen=True)
class MosaicPart:
    """One image of a mosaic: RGB [H, W, 3] uint8, boxes [G, 4] xyxy pixels, labels [G], ignore [G]."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray


def mosaic(
    parts: Sequence[MosaicPart], side: int, offset: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The S x S window at ``offset`` (x, y, each in 0..S) of the 2S x 2S canvas of four ``parts`` (top left, top
    right, bottom left, bottom right), each resized to S x S.

    Returns the image [S, S, 3] uint8 and, for the objects kept (``MIN_VISIBLE`` of the area and ``MIN_SIDE`` px
    of each side inside the window), boxes [K, 4] xyxy pixels of the window (clipped to it), labels [K] and
    ignore [K].
    """
    if len(parts) != 4:
        raise ValueError(f"mosaic: expected 4 images, got {len(parts)}")
    ox, oy = offset
    if not (0 <= ox <= side and 0 <= oy <= side):
        raise ValueError(f"mosaic: offset {offset} outside 0..{side}")
    canvas = np.empty((2 * side, 2 * side, 3), dtype=np.uint8)
    boxes, labels, ignore = [], [], []
    for k, part in enumerate(parts):
        height, width = part.image.shape[:2]
        x0, y0 = (k % 2) * side, (k // 2) * side
        canvas[y0 : y0 + side, x0 : x0 + side] = cv2.resize(part.image, (side, side), interpolation=cv2.INTER_AREA)
        scale = np.array([side / width, side / height, side / width, side / height], dtype=np.float32)
        boxes.append(np.asarray(part.boxes, dtype=np.float32).reshape(-1, 4) * scale + [x0, y0, x0, y0])
        labels.append(np.asarray(part.labels, dtype=np.int64).reshape(-1))
        ignore.append(np.asarray(part.ignore, dtype=bool).reshape(-1))
    window = canvas[oy : oy + side, ox : ox + side]
    all_boxes = np.concatenate(boxes) - np.array([ox, oy, ox, oy], dtype=np.float32)  # [G, 4] in the window
    clipped = np.clip(all_boxes, 0, side)
    sides = clipped[:, 2:] - clipped[:, :2]  # [G, 2]
    area = np.prod(all_boxes[:, 2:] - all_boxes[:, :2], axis=1)
    inside = np.all(sides >= MIN_SIDE, axis=1) & (np.prod(sides, axis=1) >= MIN_VISIBLE * area)
    return (
        np.ascontiguousarray(window),
        clipped[inside],
        np.concatenate(labels)[inside],
        np.concatenate(ignore)[inside],
    )
