"""Pictures of a training run: curves.png (matplotlib, optional) and val_predictions.png."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import ssdcli.engine.train.run_plots as run_plots
from ssdcli.core.detections import Detections
from ssdcli.data.dataset import open_index
from ssdcli.data.synth import write_synth

ROWS = [
    {"epoch": 1, "loss": 9.0, "loss_conf": 6.0, "loss_loc": 3.0, "lr": 0.01, "map50": 0.1, "coco_ap": 0.05},
    {"epoch": 2, "loss": 6.0, "loss_conf": 4.0, "loss_loc": 2.0, "lr": 0.005, "map50": float("nan"), "coco_ap": 0.0},
    {"epoch": 3, "loss": 4.0, "loss_conf": 3.0, "loss_loc": 1.0, "lr": 0.001, "map50": 0.6, "coco_ap": 0.3},
]


def test_curves_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = run_plots.write_curves(ROWS, tmp_path)
    image = cv2.imread(str(path))
    assert path == tmp_path / "curves.png" and image.shape == (360, 1200, 3)
    assert (image < 250).any(), "an empty picture"
    assert not list(tmp_path.glob(".*"))


def test_drawing_curves_leaves_matplotlibs_backend_as_it_is(tmp_path: Path) -> None:
    """A notebook's backend is not switched by a library call that draws a figure."""
    matplotlib = pytest.importorskip("matplotlib")
    chosen = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        assert run_plots.write_curves(ROWS, tmp_path) == tmp_path / "curves.png"
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(chosen)
    assert cv2.imread(str(tmp_path / "curves.png")).shape == (360, 1200, 3)


def test_curves_without_matplotlib_are_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_plots, "have_matplotlib", lambda: False)
    assert run_plots.write_curves(ROWS, tmp_path) is None and not list(tmp_path.iterdir())


def test_predictions_grid_shows_ground_truth_and_detections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "voc"
    write_synth(root, format="voc", images=20, seed=0)
    index = open_index(root, "val")
    monkeypatch.setattr(run_plots, "GROUND_TRUTH_BGR", (255, 0, 255))  # a colour no synthetic image holds
    detections = [
        Detections(r.boxes, np.full(len(r.boxes), 0.1, np.float32), r.labels, image_id=r.image_id) for r in index.records
    ]
    path = run_plots.write_predictions_grid(index, detections, tmp_path)
    grid = cv2.imread(str(path)).astype(int)
    tiles = min(len(index.records), run_plots.GRID_IMAGES)
    columns = int(np.ceil(np.sqrt(tiles)))
    assert grid.shape == (int(np.ceil(tiles / columns)) * run_plots.TILE, columns * run_plots.TILE, 3)
    first = index.records[0]
    scale = run_plots.TILE / max(first.width, first.height)
    x1, y1, x2, y2 = first.boxes[0] * scale
    tile = grid[: run_plots.TILE, : run_plots.TILE]
    magenta = (tile[..., 0] > 180) & (tile[..., 1] < 90) & (tile[..., 2] > 180)
    ys, xs = np.nonzero(magenta)
    assert len(xs) > (x2 - x1), "the ground truth is not drawn"
    assert xs.min() <= x1 + 2 and ys.min() <= y1 + 2  # at the boxes, not elsewhere
    # Detections below the display score are not drawn; above it, they are (in their class colours).
    plain = cv2.imread(str(path))
    shown = [Detections(d.boxes, np.full(len(d.boxes), 0.9, np.float32), d.labels, image_id=d.image_id) for d in detections]
    drawn = cv2.imread(str(run_plots.write_predictions_grid(index, shown, tmp_path)))
    assert (drawn != plain).any()


def test_training_leaves_its_pictures(tmp_path: Path) -> None:
    from ssdcli.cli.app import main

    args = ["train", "--synth-images", "16", "--batch-size", "4", "--epochs", "2", "--max-steps-per-epoch", "1"]
    assert main(args + ["--workers", "0", "--device", "cpu", "--out", str(tmp_path), "--no-verify-images"]) == 0
    for name in ("curves.png", "val_predictions.png"):
        assert cv2.imread(str(tmp_path / "1" / name)) is not None, name
