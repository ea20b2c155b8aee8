"""``ssd encode IMAGE``: how the ground truth of one image is matched to the default boxes (DESIGN.md 1.3).

The image is resized to the layout's square input (SSD's convention, no letterbox), so GT boxes are normalised
by the original width and height. Matching and encoding are the core engine's :func:`match` and :func:`encode`
on a batch of one image; flagged GTs (difficult, crowd, empty) go in as padding, as in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ssdcli.core.anchors import AnchorLayout, default_boxes
from ssdcli.core.boxes import cxcywh_to_xyxy, pairwise_iou
from ssdcli.core.matching import encode, match
from ssdcli.engine.inspect.annotations import ImageAnnotation, read_annotation, read_image
from ssdcli.engine.inspect.layouts import NamedLayout
from ssdcli.engine.inspect.sizes import size_bucket


@dataclass(frozen=True)
class MatchedBox:
    """A default box assigned to a GT.

    anchor: index into the layout's default boxes; layer: feature map; row, col: its cell; box: index within the
    cell (0: square s_k, 1: square sqrt(s_k s_k+1), 2...: one per aspect ratio); box_xyxy: in original image px.
    """

    anchor: int
    layer: int
    row: int
    col: int
    box: int
    iou: float
    box_xyxy: tuple[float, float, float, float]


@dataclass(frozen=True)
class GtReport:
    """How one GT is matched.

    box_xyxy, size_wh: original image pixels; input_size_wh: pixels of the network input (layout.image_size).
    size_bucket: the sqrt(area) bucket at the network input. flag: "" for a training target, else why it is not
    matched ("difficult", "crowd", "empty"). best_iou, best_anchor: its highest IoU with any default box and that
    box. matches_per_layer: default boxes assigned to it, per feature map. best_match: the highest-IoU box among
    those assigned to it (None if none), and offsets its encoded target (t_cx, t_cy, t_w, t_h).
    """

    index: int
    class_name: str
    box_xyxy: tuple[float, float, float, float]
    size_wh: tuple[float, float]
    input_size_wh: tuple[float, float]
    size_bucket: str
    flag: str
    best_iou: float
    best_anchor: int
    above_threshold: bool
    matches_per_layer: tuple[int, ...]
    matched: tuple[MatchedBox, ...]
    best_match: MatchedBox | None
    offsets: tuple[float, float, float, float] | None

    @property
    def num_matches(self) -> int:
        return sum(self.matches_per_layer)


@dataclass(frozen=True)
class ImageReport:
    """The matching of one image.

    positives, negatives: default boxes with and without a GT. below_threshold: GTs (training targets) with no
    default box of IoU > threshold; the reference rule (best_anchor=False) leaves exactly these unmatched.
    unmatched: GTs (training targets) that got no default box under the rule used.
    """

    image_path: Path
    annotation_path: Path
    width: int
    height: int
    layout_name: str
    layout: AnchorLayout
    threshold: float
    best_anchor: bool
    gts: tuple[GtReport, ...]
    positives: int
    negatives: int
    below_threshold: int
    unmatched: int
    notes: tuple[str, ...] = ()

    @property
    def num_anchors(self) -> int:
        return self.positives + self.negatives


def anchor_cells(layout: AnchorLayout, anchors: torch.Tensor) -> torch.Tensor:
    """[K, 4] int64 (layer, row, col, box in cell) of default-box indices ``anchors`` [K]."""
    per_layer = torch.tensor(layout.anchors_per_layer)
    starts = torch.cumsum(per_layer, 0) - per_layer  # [L]
    layer = layout.layer_index()[anchors]
    within = anchors - starts[layer]
    per_cell = torch.tensor(layout.boxes_per_cell)[layer]
    cell, box = within // per_cell, within % per_cell
    side = torch.tensor(layout.feature_maps)[layer]
    return torch.stack((layer, cell // side, cell % side, box), dim=1)


def _gt_tensors(annotation: ImageAnnotation) -> tuple[torch.Tensor, torch.Tensor]:
    """([1, G, 4] xyxy normalised by the image size, [1, G] int64 classes 1.. with -1 for flagged GTs)."""
    names = sorted({o.class_name for o in annotation.objects if not o.flag})
    class_id = {name: k + 1 for k, name in enumerate(names)}
    scale = torch.tensor([annotation.width, annotation.height] * 2, dtype=torch.float64)
    boxes = torch.tensor([o.box_xyxy for o in annotation.objects], dtype=torch.float64).reshape(-1, 4) / scale
    classes = torch.tensor([-1 if o.flag else class_id[o.class_name] for o in annotation.objects], dtype=torch.int64)
    return boxes.to(torch.float32)[None], classes[None]


def encode_image(
    annotation: ImageAnnotation, layout: NamedLayout, threshold: float = 0.5, best_anchor: bool = True
) -> ImageReport:
    """Match the GTs of one image to the default boxes of ``layout`` and describe the result per GT."""
    spec = layout.layout
    anchors = default_boxes(spec)  # [A, 4] cxcywh normalised
    boxes, classes = _gt_tensors(annotation)  # [1, G, 4], [1, G]
    matched = match(boxes, classes, anchors, threshold, best_anchor)
    targets = encode(boxes, classes, anchors, threshold, best_anchor)
    anchors_xyxy = cxcywh_to_xyxy(anchors)  # [A, 4]
    iou = pairwise_iou(boxes, anchors_xyxy)[0]  # [G, A], flagged GTs included
    gt_index = matched.gt_index[0]  # [A]
    layer_of = spec.layer_index()
    scale_px = torch.tensor([annotation.width, annotation.height] * 2, dtype=torch.float64)
    rows = []
    for g, obj in enumerate(annotation.objects):
        mine = torch.nonzero(gt_index == g).flatten()  # [K]
        cells = anchor_cells(spec, mine)
        ious = iou[g, mine]
        matched_boxes = tuple(
            MatchedBox(
                anchor=int(a),
                layer=int(c[0]),
                row=int(c[1]),
                col=int(c[2]),
                box=int(c[3]),
                iou=float(v),
                box_xyxy=tuple(float(x) for x in anchors_xyxy[a].double() * scale_px),  # type: ignore[arg-type]
            )
            for a, c, v in zip(mine.tolist(), cells, ious)
        )
        best_match = max(matched_boxes, key=lambda m: m.iou) if matched_boxes else None
        x1, y1, x2, y2 = obj.box_xyxy
        w, h = x2 - x1, y2 - y1
        input_wh = (w / annotation.width * spec.image_size, h / annotation.height * spec.image_size)
        best_iou, best_a = iou[g].max(dim=0)
        rows.append(
            GtReport(
                index=g,
                class_name=obj.class_name,
                box_xyxy=obj.box_xyxy,
                size_wh=(w, h),
                input_size_wh=input_wh,
                size_bucket=size_bucket(math.sqrt(input_wh[0] * input_wh[1])),
                flag=obj.flag,
                best_iou=float(best_iou),
                best_anchor=int(best_a),
                above_threshold=bool(best_iou > threshold),
                matches_per_layer=tuple(int(n) for n in torch.bincount(layer_of[mine], minlength=spec.num_layers)),
                matched=matched_boxes,
                best_match=best_match,
                offsets=None
                if best_match is None
                else tuple(float(t) for t in targets.offsets[0, best_match.anchor]),  # type: ignore[arg-type]
            )
        )
    positives = int((targets.labels[0] > 0).sum())
    targets_only = [r for r in rows if not r.flag]
    return ImageReport(
        image_path=annotation.image_path,
        annotation_path=annotation.annotation_path,
        width=annotation.width,
        height=annotation.height,
        layout_name=layout.name,
        layout=spec,
        threshold=threshold,
        best_anchor=best_anchor,
        gts=tuple(rows),
        positives=positives,
        negatives=anchors.shape[0] - positives,
        below_threshold=sum(not r.above_threshold for r in targets_only),
        unmatched=sum(r.num_matches == 0 for r in targets_only),
        notes=annotation.notes,
    )


def encode_image_file(
    image: str | Path,
    annotation: str | Path | None,
    layout: NamedLayout,
    threshold: float = 0.5,
    best_anchor: bool = True,
    image_id: int | None = None,
) -> ImageReport:
    """Read an image (for its size; a corrupt file is a DataError) and its annotation, and match them."""
    height, width = read_image(image).shape[:2]
    annotation_data = read_annotation(image, annotation, image_id, image_size=(width, height))
    return encode_image(annotation_data, layout, threshold, best_anchor)
