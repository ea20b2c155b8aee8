"""Pictures of a training run, written into its folder: ``curves.png`` (losses, learning rate and validation mAP
per epoch, with matplotlib, an optional extra) and ``val_predictions.png`` (validation images with their ground
truth and the model's detections, drawn with the project's own drawing code).

Both are rewritten atomically after every validation and at the end of training. Without matplotlib the curves are
skipped and the caller says so once; the predictions grid needs nothing beyond OpenCV.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from ssdcli.data.files import atomic_path
from ssdcli.data.images import read_image_rgb
from ssdcli.data.records import DatasetIndex
from ssdcli.errors import SsdcliError

from ssdcli.engine.inference.draw import draw_detections
from ssdcli.engine.events import EventHandler, Message
from ssdcli.engine.inference.batched import ImageDetections
from ssdcli.engine.inference.predictor import Detections

CURVES_PNG = "curves.png"
PREDICTIONS_PNG = "val_predictions.png"
GRID_IMAGES = 9
TILE = 320  # px, each grid image's longer side
SHOW_SCORE = 0.3  # detections drawn from this score up
GROUND_TRUTH_BGR = (0, 200, 0)
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
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in rows]
    figure = Figure(figsize=(12, 3.6), dpi=100, layout="constrained")
    losses, rate, quality = figure.subplots(1, 3)
    for key, label in (("loss", "total"), ("loss_conf", "classification"), ("loss_loc", "localisation")):
        losses.plot(epochs, [row[key] for row in rows], marker=".", label=label)
    losses.set(title="training loss", xlabel="epoch")
    losses.legend()
    rate.plot(epochs, [row["lr"] for row in rows], marker=".")
    rate.set(title="learning rate (end of epoch)", xlabel="epoch")
    rate.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    validated = [row for row in rows if isinstance(row.get("map50"), float) and not math.isnan(row["map50"])]
    for key, label in (("map50", "VOC07 mAP@0.5"), ("coco_ap", "COCO AP@[.5:.95]")):
        quality.plot([r["epoch"] for r in validated], [r[key] for r in validated], marker="o", label=label)
    quality.set(title="validation", xlabel="epoch", ylim=(0, 1))
    if validated:
        quality.legend()
    else:
        quality.text(0.5, 0.5, "no validation", ha="center", va="center", transform=quality.transAxes)
    return _replace_atomically(folder / CURVES_PNG, lambda path: figure.savefig(path))


def _tile(image_bgr: np.ndarray) -> np.ndarray:
    height, width = image_bgr.shape[:2]
    scale = TILE / max(height, width)
    resized = cv2.resize(image_bgr, (max(1, round(width * scale)), max(1, round(height * scale))))
    tile = np.full((TILE, TILE, 3), 255, dtype=np.uint8)
    tile[: resized.shape[0], : resized.shape[1]] = resized
    return tile


def draw_ground_truth(image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Ground-truth boxes [G, 4] xyxy pixels as thin green rectangles."""
    for x1, y1, x2, y2 in np.asarray(boxes).reshape(-1, 4):
        cv2.rectangle(image_bgr, (int(x1), int(y1)), (int(x2), int(y2)), GROUND_TRUTH_BGR, 1, cv2.LINE_AA)
    return image_bgr


def write_predictions_grid(
    index: DatasetIndex, detections: Sequence[ImageDetections], folder: Path, count: int = GRID_IMAGES
) -> Path | None:
    """``val_predictions.png``: the first ``count`` images of ``index`` in a square grid, ground truth in green and
    the detections scoring at least :data:`SHOW_SCORE` in their class colours with names and scores."""
    by_id = {found.image_id: found for found in detections}
    records = [record for record in index.records if record.image_id in by_id][:count]
    if not records:
        return None
    tiles = []
    for record in records:
        found = by_id[record.image_id]
        keep = found.scores >= SHOW_SCORE
        labels = found.labels[keep]
        names = tuple(index.class_names[int(label)] for label in labels)
        shown = Detections(found.boxes[keep], found.scores[keep], labels, names, (record.height, record.width))
        image = cv2.cvtColor(read_image_rgb(record.path), cv2.COLOR_RGB2BGR)
        tiles.append(_tile(draw_detections(draw_ground_truth(image, record.boxes), shown)))
    columns = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    tiles += [np.full_like(tiles[0], 255)] * (rows * columns - len(tiles))
    grid = np.vstack([np.hstack(tiles[r * columns : (r + 1) * columns]) for r in range(rows)])

    def write(path: Path) -> None:
        if not cv2.imwrite(str(path), grid):
            raise OSError(f"cannot write {path}")

    return _replace_atomically(folder / PREDICTIONS_PNG, write)


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

    def predictions(self, index: DatasetIndex, detections: Sequence[ImageDetections]) -> None:
        try:
            write_predictions_grid(index, detections, self.folder)
        except (OSError, ValueError, SsdcliError) as error:
            self._warn_once("predictions", f"{PREDICTIONS_PNG} not drawn: {error}")
