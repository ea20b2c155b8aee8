"""Pictures of a training run, written into its folder: ``curves.png`` (losses, learning rate and validation mAP
per epoch, with matplotlib, an optional extra) and ``val_predictions.png`` (validation images with their ground
truth and the model's detections), both drawn by :mod:`ssdcli.viz`.

Both are rewritten atomically after every validation and at the end of training. Without matplotlib the curves are
skipped and the caller says so once; the predictions grid needs nothing beyond OpenCV.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from ssdcli.core.detections import Detections
from ssdcli.data.files import atomic_path
from ssdcli.data.images import read_image_rgb, write_image
from ssdcli.data.records import DatasetIndex
from ssdcli.engine.events import EventHandler, Message
from ssdcli.errors import SsdcliError
from ssdcli.viz.boxes import draw_boxes, draw_detections
from ssdcli.viz.colours import GROUND_TRUTH, bgr
from ssdcli.viz.curves import training_curves
from ssdcli.viz.grid import image_grid, tile

CURVES_PNG = "curves.png"
PREDICTIONS_PNG = "val_predictions.png"
GRID_IMAGES = 9
TILE = 320  # px, each grid image's longer side
SHOW_SCORE = 0.3  # detections drawn from this score up
GROUND_TRUTH_BGR = bgr(GROUND_TRUTH)
MATPLOTLIB_MISSING = "curves.png skipped: it needs matplotlib (pip install 'ssdcli[plots]')"


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _replace_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    with atomic_path(path, suffix=".png") as temporary:  # the writers go by the suffix
        write(temporary)
    return path


def write_curves(rows: Sequence[dict[str, float]], folder: Path) -> Path | None:
    """``curves.png`` from the metrics.csv rows (epoch, loss, loss_conf, loss_loc, lr, map50, coco_ap); None
    without matplotlib."""
    if not rows or not have_matplotlib():
        return None
    figure = training_curves(rows)
    return _replace_atomically(folder / CURVES_PNG, lambda path: figure.savefig(path))


def draw_ground_truth(image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """A copy of ``image_bgr`` [H, W, 3] with ground-truth boxes [G, 4] xyxy pixels as thin rectangles."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    return draw_boxes(image_bgr, boxes, [bgr(GROUND_TRUTH_BGR)] * len(boxes))


def write_predictions_grid(
    index: DatasetIndex, detections: Sequence[Detections], folder: Path, count: int = GRID_IMAGES
) -> Path | None:
    """``val_predictions.png``: the first ``count`` images of ``index`` in a square grid, ground truth in
    :data:`GROUND_TRUTH_BGR` and the detections scoring at least :data:`SHOW_SCORE` in their class colours, with
    names and scores."""
    by_id = {found.image_id: found for found in detections}
    records = [record for record in index.records if record.image_id in by_id][:count]
    if not records:
        return None
    tiles = []
    for record in records:
        found = by_id[record.image_id]
        keep = found.scores >= SHOW_SCORE
        names = [index.class_names[int(label)] for label in found.labels[keep]]
        image = draw_ground_truth(cv2.cvtColor(read_image_rgb(record.path), cv2.COLOR_RGB2BGR), record.boxes)
        tiles.append(tile(draw_detections(image, found.boxes[keep], found.scores[keep], names), TILE))
    return write_image(folder / PREDICTIONS_PNG, image_grid(tiles))


class RunPictures:
    """The pictures of one training run, redrawn after each validation (predictions) and epoch (curves). A picture
    that cannot be drawn is said once as a warning and does not stop training."""

    def __init__(self, folder: Path, emit: EventHandler) -> None:
        self.folder = folder
        self.emit = emit
        self.said: set[str] = set()

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self.said:
            self.said.add(key)
            self.emit(Message(text, "warning"))

    def curves(self, rows: Sequence[dict[str, float]]) -> None:
        if not have_matplotlib():
            self._warn_once("matplotlib", MATPLOTLIB_MISSING)
            return
        try:
            write_curves(rows, self.folder)
        except (OSError, ValueError) as error:
            self._warn_once("curves", f"{CURVES_PNG} not drawn: {error}")

    def predictions(self, index: DatasetIndex, detections: Sequence[Detections]) -> None:
        try:
            write_predictions_grid(index, detections, self.folder)
        except (OSError, ValueError, SsdcliError) as error:
            self._warn_once("predictions", f"{PREDICTIONS_PNG} not drawn: {error}")
