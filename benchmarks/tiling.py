"""Sliced inference (``--tile``) and test-time flip (``--flip``) on CPU: seconds per photo, medians over rounds.

    .venv/bin/python benchmarks/tiling.py                                   # random ssd_tiny256, 1280 x 960 photos
    .venv/bin/python benchmarks/tiling.py --checkpoint runs/hardhat/1/best.pt --images ../shared/data/hardhat/HardHat/JPEGImages

Variants, run in turn round after round (so a change in machine load affects all alike):

- ``whole``: the photo detected once at the model's input (no ``--tile``).
- ``tile, 1 window per batch``: ``--tile SIZE`` as ssdcli ran it before windows were batched.
- ``tile, N windows per batch``: ``--tile SIZE`` as ``ssd eval`` and ``ssd predict`` run it now.
- ``tile + flip``: the same with ``--flip`` (each window and its mirror image in one batch).

The first round checks that batching changes no detection: the batched and the one-window-per-batch variants must
give the same boxes (to 1e-3 px), scores and labels. Without ``--checkpoint`` the model is an untrained
``ssd_tiny256`` (its scores near a third for every class: a low threshold of 0.3 keeps detections for the merge to work on).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ssdcli.core.detections import Detections
from ssdcli.engine.checkpoint import Checkpoint, save_checkpoint
from ssdcli.engine.inference.detectors import Detector, load_detector
from ssdcli.engine.inference.options import DetectOptions
from ssdcli.engine.inference.preprocess import to_rgb_tensor
from ssdcli.engine.inference.tiled import Tiling, detect_tiled
from ssdcli.models.build import build_model
from ssdcli.models.spec import ModelSpec, default_config


def random_checkpoint(folder: Path) -> Path:
    """An untrained ssd_tiny256 checkpoint of 3 classes (seed 0)."""
    torch.manual_seed(0)
    model = build_model(default_config("ssd_tiny256", num_classes=4))
    path = folder / "random.pt"
    spec = ModelSpec(model.config, ("background", "a", "b", "c"), (0, 1, 2, 3))
    save_checkpoint(Checkpoint(spec, model.state_dict()), path)
    return path


def photos(args: argparse.Namespace) -> list[torch.Tensor]:
    """The photos to time: the first ``--count`` images of ``--images``, or random ones of ``--size``."""
    if args.images:
        files = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        return [to_rgb_tensor(path) for path in files[: args.count]]
    generator = np.random.default_rng(0)
    width, height = args.size
    return [torch.from_numpy(generator.integers(0, 256, (3, height, width), dtype=np.uint8)) for _ in range(args.count)]


def tiled_with(detector: Detector, tiling: Tiling, batch_size: int) -> Callable[[torch.Tensor], Detections]:
    """``--tile`` with ``batch_size`` windows per batch."""
    settings = detector.settings  # what TiledDetector passes, with the batch size left to choose
    return lambda image: detect_tiled(
        image, detector.predict_rgb, tiling, settings.iou_threshold, settings.top_k, batch_size
    )


def same(a: list[Detections], b: list[Detections]) -> bool:
    return all(
        len(x) == len(y)
        and np.allclose(x.boxes, y.boxes, atol=1e-3)
        and np.allclose(x.scores, y.scores, atol=1e-5)
        and np.array_equal(x.labels, y.labels)
        for x, y in zip(a, b, strict=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a trained checkpoint (default: an untrained ssd_tiny256)")
    parser.add_argument("--images", type=Path, help="a folder of photos (default: random ones of --size)")
    parser.add_argument("--size", type=int, nargs=2, default=(1280, 960), metavar=("W", "H"))
    parser.add_argument("--count", type=int, default=4, help="photos per round")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=float, default=0.2)
    parser.add_argument("--batch", type=int, default=16, help="windows per batch of the batched variant")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = args.checkpoint or random_checkpoint(Path(folder))
        options = DetectOptions(conf_threshold=0.3)
        plain = load_detector(checkpoint, options=options)
        flipped = load_detector(checkpoint, options=DetectOptions(conf_threshold=0.3, flip=True))
    tiling = Tiling(args.tile, args.overlap)
    images = photos(args)
    variants: dict[str, Callable[[torch.Tensor], Detections]] = {
        "whole": plain.detect,
        "tile, 1 window per batch": tiled_with(plain, tiling, 1),
        f"tile, {args.batch} windows per batch": tiled_with(plain, tiling, args.batch),
        f"tile + flip, {args.batch} windows per batch": tiled_with(flipped, tiling, args.batch),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        first = {name: [detect(image) for image in images] for name, detect in variants.items()}  # warm-up, checked
        batched = f"tile, {args.batch} windows per batch"
        if not same(first["tile, 1 window per batch"], first[batched]):
            raise SystemExit("batched windows changed the detections")
        for _ in range(args.rounds):
            for name, detect in variants.items():
                started = time.perf_counter()
                for image in images:
                    detect(image)
                times[name].append((time.perf_counter() - started) / len(images))
    height, width = images[0].shape[1:]
    print(f"{len(images)} photos of {width} x {height} px, windows of {args.tile} px, overlap {args.overlap}, "
          f"{args.threads} threads, median of {args.rounds} rounds; detections per photo (tiled): "
          f"{statistics.mean(len(d) for d in first[batched]):.1f}; the same detections batched and one by one")
    print("| variant | s per photo | vs whole |")
    print("|---|---:|---:|")
    whole = statistics.median(times["whole"])
    for name, measured in times.items():
        median = statistics.median(measured)
        print(f"| {name} | {median:.3f} | {median / whole:.1f}x |")


if __name__ == "__main__":
    main()
