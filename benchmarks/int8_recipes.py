"""INT8 quantisation recipes of one checkpoint, each judged by `ssd export --int8`'s detection check and by the
mAP of `ssd eval --onnx` on a split.

    PYTHONPATH=src .venv/bin/python benchmarks/int8_recipes.py RUN/best.pt DATA --split test [--recipes a,b]

For each recipe (named below): the check figure (AP@0.5 of the INT8 detections against the FP32 file's on the
images held back from calibration), the raw-output cosine the former check used, VOC07 mAP@0.5 of the FP32 and
INT8 files on the split, and the INT8 file's speed-up over FP32 in ONNX Runtime (batch 1, one thread). The
calibration images are the checkpoint's training split, as `ssd export --int8` takes them by default.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ssdcli.cli.app import main as ssd
from ssdcli.engine.export.exporter import _training_images, export_onnx
from ssdcli.engine.export.quantize import (
    MAX_CALIBRATION_IMAGES,
    QuantRecipe,
    _inputs,
    check_count,
    compare_detections,
    quantize_file,
    run_network,
)
from ssdcli.engine.inference.loading import load_model

RECIPES = {
    "minmax": QuantRecipe(calibration="minmax", fp32_head=False),  # the former default
    "minmax-symmetric": QuantRecipe(calibration="minmax", symmetric_activations=True, fp32_head=False),
    "minmax-per-tensor": QuantRecipe(calibration="minmax", per_channel=False, fp32_head=False),
    "percentile": QuantRecipe(calibration="percentile", fp32_head=False),
    "entropy": QuantRecipe(calibration="entropy", fp32_head=False),
    "minmax+fp32-head": QuantRecipe(calibration="minmax", fp32_head=True),
    "percentile+fp32-head": QuantRecipe(calibration="percentile", fp32_head=True),
}


def _map(onnx_file: Path, data: Path, split: str, work: Path) -> float:
    out = work / f"{onnx_file.stem}.json"
    args = ["eval", "--onnx", str(onnx_file), "--data", str(data), "--split", split, "--json", str(out), "--force"]
    if ssd(args + ["--out", str(work / f"eval-{onnx_file.stem}")]) != 0:
        raise SystemExit(f"ssd eval failed on {onnx_file}")
    return float(json.loads(out.read_text())["mAP"])


def _milliseconds(onnx_file: Path, image: np.ndarray, rounds: int = 30) -> float:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
    session.run(None, {"images": image})
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        session.run(None, {"images": image})
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    args = parser.parse_args()
    import onnxruntime

    work = Path(tempfile.mkdtemp(prefix="ssd-int8-recipes-"))
    loaded = load_model(args.checkpoint, "cpu")
    spec = loaded.spec
    fp32 = export_onnx(loaded, work / "fp32.onnx", 18, True, False).path
    images = _training_images(args.checkpoint)
    if len(images) > MAX_CALIBRATION_IMAGES:
        images = sorted(random.Random(0).sample(images, MAX_CALIBRATION_IMAGES))
    prepared = _inputs(images, spec.layout.image_size, spec.mean, spec.std)
    held_back = check_count(len(prepared))
    calibration, check_images = prepared[:-held_back], prepared[-held_back:]
    session = onnxruntime.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    expected = run_network(session, check_images)
    fp32_map = _map(fp32, args.data, args.split, work)
    fp32_ms = _milliseconds(fp32, check_images[:1])
    for name in args.recipes.split(","):
        recipe = RECIPES[name]
        int8 = work / f"int8-{name}.onnx"
        kept = quantize_file(fp32, int8, calibration, recipe)
        got = run_network(onnxruntime.InferenceSession(str(int8), providers=["CPUExecutionProvider"]), check_images)
        check = compare_detections(expected, got, spec)
        row = {
            "recipe": name,
            "fp32_map": round(fp32_map, 4),
            "int8_map": round(_map(int8, args.data, args.split, work), 4),
            "check_ap": round(check.ap, 4),
            "scores_only": round(check.ap_scores_only, 4),
            "boxes_only": round(check.ap_boxes_only, 4),
            "cosine": round(check.cosine, 4),
            "reference": check.reference,
            "check_images": check.images,
            "calibration_images": len(calibration),
            "fp32_convolutions": len(kept),
            "speed_up": round(fp32_ms / _milliseconds(int8, check_images[:1]), 2),
            "drift": [(n, round(e, 3)) for n, e in check.drift[:3]],
            "settings": asdict(recipe),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
