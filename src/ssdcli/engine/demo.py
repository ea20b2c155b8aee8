"""The built-in demo: a generated image, matched against SSD300's default boxes (no downloads needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ssdcli.core.anchors import default_boxes, get_layout
from ssdcli.core.boxes import cxcywh_to_xyxy
from ssdcli.core.matching import encode, match

from .rundir import fresh_run_dir

DEMO_CLASSES = ("background", "square", "wide", "tall")


@dataclass(frozen=True)
class GroundTruthReport:
    """How one GT box was matched. ``box_xyxy`` in pixels; ``matches_per_layer`` one count per feature map."""

    class_name: str
    box_xyxy: tuple[float, float, float, float]
    best_iou: float
    matches_per_layer: tuple[int, ...]


@dataclass(frozen=True)
class DemoResult:
    run_dir: Path
    image_path: Path
    layout_name: str
    ground_truths: tuple[GroundTruthReport, ...]
    positives: int
    negatives: int


def _demo_scene(size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured image [size, size, 3] with coloured boxes; returns (image, boxes xyxy pixels [G, 4], classes [G])."""
    rng = np.random.default_rng(seed)
    image = rng.integers(90, 140, size=(size, size, 3), dtype=np.uint8)
    boxes = np.array([[40, 50, 120, 130], [150, 60, 280, 110], [200, 150, 240, 280], [20, 200, 32, 212]], float)
    classes = np.array([1, 2, 3, 1])
    colours = rng.integers(0, 255, size=(len(boxes), 3))
    for (x1, y1, x2, y2), colour in zip(boxes.astype(int), colours):
        cv2.rectangle(image, (x1, y1), (x2, y2), tuple(int(c) for c in colour), thickness=-1)
    return image, boxes, classes


def run_demo(out: str | Path, layout_name: str = "ssd300", seed: int = 0) -> DemoResult:
    """Write a generated image into a fresh run folder and match its boxes to the layout's default boxes."""
    layout = get_layout(layout_name)
    run_dir = fresh_run_dir(out)
    image, boxes_px, classes = _demo_scene(layout.image_size, seed)
    image_path = run_dir / "demo.png"
    cv2.imwrite(str(image_path), image)
    anchors = default_boxes(layout)
    boxes = torch.tensor(boxes_px / layout.image_size, dtype=torch.float32)[None]  # [1, G, 4]
    labels = torch.tensor(classes)[None]  # [1, G]
    matched = match(boxes, labels, anchors)
    targets = encode(boxes, labels, anchors)
    layer = layout.layer_index()
    reports = []
    for g in range(boxes.shape[1]):
        mine = matched.gt_index[0] == g
        per_layer = torch.bincount(layer[mine], minlength=layout.num_layers)
        reports.append(
            GroundTruthReport(
                class_name=DEMO_CLASSES[int(classes[g])],
                box_xyxy=tuple(float(v) for v in boxes_px[g]),
                best_iou=float(matched.iou[0, g].max()),
                matches_per_layer=tuple(int(c) for c in per_layer),
            )
        )
    positives = int((targets.labels > 0).sum())
    for box in cxcywh_to_xyxy(anchors[matched.gt_index[0] >= 0]) * layout.image_size:
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(image, (x1, y1), (x2, y2), (255, 255, 255), 1)
    cv2.imwrite(str(run_dir / "demo_matches.png"), image)
    return DemoResult(run_dir, image_path, layout_name, tuple(reports), positives, anchors.shape[0] - positives)
