"""Accuracy of a checkpoint's exports on a data set: the checkpoint, ONNX (raw outputs), ONNX with NMS in the graph,
TorchScript and INT8 ONNX, each evaluated by `ssd eval` on the same split.

    .venv/bin/python benchmarks/export_accuracy.py RUN/best.pt ../shared/data/bccd/BCCD --split test [--markdown]

Prints VOC07 mAP@0.5 and COCO AP@[.5:.95] of each form and its difference to the checkpoint. The INT8 file is
calibrated on the checkpoint's training split (up to 200 images), as `ssd export --int8` does by default.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def ssd(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "ssdcli", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ssd {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ssd-export-accuracy-"))
    forms = {
        "checkpoint": (["--checkpoint", str(args.checkpoint)], None),
        "ONNX": (["--onnx", str(work / "raw.onnx")], ["--to", "onnx", "--out", str(work / "raw.onnx")]),
        "ONNX --with-nms": (
            ["--onnx", str(work / "nms.onnx")],
            ["--to", "onnx", "--with-nms", "--out", str(work / "nms.onnx")],
        ),
        "TorchScript": (
            ["--torchscript", str(work / "m.torchscript.pt")],
            ["--to", "torchscript", "--out", str(work / "m.torchscript.pt")],
        ),
        "ONNX INT8": (["--onnx", str(work / "int8.onnx")], ["--to", "onnx", "--int8", "--out", str(work / "int8.onnx")]),
    }
    rows = []
    for name, (model, export) in forms.items():
        started = time.perf_counter()
        if export is not None:
            ssd("export", "--checkpoint", str(args.checkpoint), *export)
        metrics = work / f"{len(rows)}.json"
        ssd("eval", *model, "--data", str(args.data), "--split", args.split, "--out", str(work / "eval"),
            "--json", str(metrics), "--device", "cpu")  # fmt: skip
        result = json.loads(metrics.read_text())
        rows.append((name, result["mAP"], result["coco"]["AP"], time.perf_counter() - started))
    base_map, base_ap = rows[0][1], rows[0][2]
    lines = ["| form | VOC07 mAP@0.5 | Δ | COCO AP | Δ | seconds (export + eval) |", "|---|---:|---:|---:|---:|---:|"]
    for name, mean_ap, ap, seconds in rows:
        lines.append(
            f"| {name} | {mean_ap:.4f} | {mean_ap - base_map:+.4f} | {ap:.4f} | {ap - base_ap:+.4f} | {seconds:.0f} |"
        )
    print("\n".join(lines) if args.markdown else "\n".join(line.replace("|", " ") for line in lines))


if __name__ == "__main__":
    main()
