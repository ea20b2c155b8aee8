"""The matching of one image's ground truth to default boxes (``ssd encode --visualize``): a panel of the ground
truth, and one panel per feature map with its cell grid and the default boxes matched to each object.

The objects are read through :class:`MatchedObject` (any object with those attributes), drawn in their class colour,
or in the scheme's flagged colour when they are not training targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np

from ssdcli.core.layouts import AnchorLayout
from ssdcli.viz.boxes import draw_boxes
from ssdcli.viz.colours import FLAGGED, WHITE, Colour, bgr, class_colour, muted
from ssdcli.viz.text import put_text

#: Image brightness under the drawing, so that the coloured boxes stand out.
DIM = 0.55
GRID_ALPHA = 0.3
#: On a layer panel with more matched default boxes than this, only each object's best one there gets its IoU.
MAX_IOU_LABELS = 30


class MatchedDefaultBox(Protocol):
    """A default box assigned to an object: its feature map, IoU with the object, and xyxy in image pixels."""

    @property
    def layer(self) -> int: ...
    @property
    def iou(self) -> float: ...
    @property
    def box_xyxy(self) -> tuple[float, float, float, float]: ...


class MatchedObject(Protocol):
    """One ground-truth object: index in its image, class name, xyxy in image pixels, flag ("" for a training
    target), best IoU with any default box, matches per feature map [L] and the default boxes assigned to it."""

    @property
    def index(self) -> int: ...
    @property
    def class_name(self) -> str: ...
    @property
    def box_xyxy(self) -> tuple[float, float, float, float]: ...
    @property
    def flag(self) -> str: ...
    @property
    def best_iou(self) -> float: ...
    @property
    def matches_per_layer(self) -> tuple[int, ...]: ...
    @property
    def matched(self) -> Sequence[MatchedDefaultBox]: ...


def object_colour(obj: MatchedObject) -> Colour:
    """The RGB colour an object and its default boxes are drawn in: its class colour, grey when flagged."""
    return FLAGGED if obj.flag else class_colour(obj.class_name)


def _scaled(boxes: Sequence[tuple[float, float, float, float]], sx: float, sy: float) -> np.ndarray:
    """xyxy image pixels (N) to panel pixels [N, 4]."""
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * np.array([sx, sy, sx, sy])


def _draw_objects(
    canvas: np.ndarray, objects: Sequence[MatchedObject], sx: float, sy: float, labels: bool, layer: int | None = None
) -> np.ndarray:
    """Object boxes, 2 px in their colour; on a layer panel, objects without a match on that layer 1 px, muted."""
    for obj in objects:
        active = layer is None or obj.matches_per_layer[layer] > 0
        colour = object_colour(obj) if active else muted(object_colour(obj))
        note = f" [{obj.flag}]" if obj.flag else ""
        text = [f"#{obj.index} {obj.class_name} {obj.best_iou:.2f}{note}"] if labels else None
        canvas = draw_boxes(canvas, _scaled([obj.box_xyxy], sx, sy), [colour], text, 2 if active else 1)
    return canvas


def _cell_grid(canvas: np.ndarray, layout: AnchorLayout, layer: int) -> None:
    """Cell edges of feature map ``layer`` blended over ``canvas`` in place (the input square stretched to it)."""
    height, width = canvas.shape[:2]
    f = layout.feature_maps[layer]
    cell = 1.0 / f if layout.steps is None else layout.steps[layer] / layout.image_size
    overlay = canvas.copy()
    for j in range(f + 1):
        edge = min(j * cell, 1.0)
        x, y = int(round(edge * (width - 1))), int(round(edge * (height - 1)))
        cv2.line(overlay, (x, 0), (x, height - 1), bgr(WHITE), 1)
        cv2.line(overlay, (0, y), (width - 1, y), bgr(WHITE), 1)
    cv2.addWeighted(overlay, GRID_ALPHA, canvas, 1 - GRID_ALPHA, 0, dst=canvas)


def _layer_panel(
    base: np.ndarray, objects: Sequence[MatchedObject], layout: AnchorLayout, layer: int, sx: float, sy: float
) -> np.ndarray:
    canvas = base.copy()
    _cell_grid(canvas, layout, layer)
    label_all = sum(obj.matches_per_layer[layer] for obj in objects) <= MAX_IOU_LABELS
    for obj in objects:
        boxes = [b for b in obj.matched if b.layer == layer]
        if not boxes:
            continue
        best = max(boxes, key=lambda b: b.iou)
        scaled = _scaled([b.box_xyxy for b in boxes], sx, sy)
        canvas = draw_boxes(canvas, scaled, [object_colour(obj)] * len(boxes))
        for box, (x1, y1, x2, y2) in zip(boxes, scaled.round().astype(int).tolist()):
            cv2.circle(canvas, ((x1 + x2) // 2, (y1 + y2) // 2), 2, bgr(object_colour(obj)), -1)
            if label_all or box is best:
                put_text(canvas, f"{box.iou:.2f}", (max(x1, 0) + 2, max(y1, 0) + 10), 0.35, object_colour(obj))
    return _draw_objects(canvas, objects, sx, sy, labels=False, layer=layer)


def matching_panels(
    image_bgr: np.ndarray,
    size_wh: tuple[int, int],
    objects: Sequence[MatchedObject],
    layout: AnchorLayout,
    panel_wh: tuple[int, int],
) -> list[np.ndarray]:
    """The panels (BGR [panel_wh[1], panel_wh[0], 3] each) of ``image_bgr`` [H, W, 3] and its ``objects`` (xyxy in
    pixels of an image ``size_wh`` (width, height)): the labelled objects, then one panel per feature map of
    ``layout`` (L + 1 in all)."""
    width, height = size_wh
    resized = cv2.resize(image_bgr, panel_wh, interpolation=cv2.INTER_AREA)
    base = (resized.astype(np.float32) * DIM).astype(np.uint8)
    sx, sy = panel_wh[0] / width, panel_wh[1] / height
    first = _draw_objects(base, objects, sx, sy, labels=True)
    return [first] + [_layer_panel(base, objects, layout, k, sx, sy) for k in range(layout.num_layers)]
