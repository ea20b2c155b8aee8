"""Drawing detections on images with OpenCV: boxes, class names, scores, a stable colour per class."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from ssdcli.engine.inference.predictor import Detections


def class_colour(label: int) -> tuple[int, int, int]:
    """A BGR colour that depends only on the class label (golden-ratio hue steps, so neighbours differ)."""
    hue = (label * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_detections(image_bgr: np.ndarray, detections: Detections) -> np.ndarray:
    """A copy of ``image_bgr`` [H, W, 3] with every detection drawn and labelled ``name score``."""
    canvas = image_bgr.copy()
    thickness = max(1, round(min(canvas.shape[:2]) / 300))
    for box, score, label, name in zip(detections.boxes, detections.scores, detections.labels, detections.names):
        colour = class_colour(int(label))
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        text = f"{name} {score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, 1)
        top = max(0, y1 - th - base - 2)
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 2, top + th + base + 2), colour, -1)
        cv2.putText(canvas, text, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
