"""Accuracy side by side: ssdcli's default recipe and Ultralytics YOLO, trained from scratch on the same data set
with the same wall-clock budget on the same machine, scored by the same `ssd eval` commands on the same split.

    pip install -e '.[accuracy-bench]'     # Ultralytics: for this benchmark only, never needed by ssdcli
    python benchmarks/accuracy.py ../shared/data/bccd/BCCD --budget 10m --out runs/accuracy [--imgsz 640 320]

Steps (every model trains on ``--train-split`` and validates on ``--val-split``, as `ssd train` does by default
in docs/results.md, and is scored on ``--test-split``):

1. `ssd train --data DATA --time BUDGET` (the default recipe), then `ssd eval --checkpoint best.pt`, which also
   writes the detections as a results JSON.
2. `ssd data convert DATA --to yolo` and `--to coco`; Ultralytics trains the smallest model of its newest family
   (``--yolo-model``, from its YAML, no pretrained weights) with ``time=BUDGET`` for each ``--imgsz``, and its best
   weights predict the test images (confidence 0.001, NMS IoU 0.7, 300 per image: its own validation settings).
3. Every model's detections go through the same two commands: `ssd eval --voc` (VOC07 11-point mAP@0.5, difficult
   objects ignored) and `ssd eval --coco` against the converted instances file (AP@[.5:.95], difficult objects as
   crowd regions). For ssdcli the `--checkpoint` figures are printed beside them as a cross-check.

Prints a Markdown table (model, input size, epochs, training minutes, VOC07 mAP@0.5, COCO AP) and writes it,
with every command run, to OUT/report.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssdcli.cli.durations import parse_duration

SSD = [sys.executable, "-m", "ssdcli"]


@dataclass(frozen=True)
class Row:
    model: str
    input_size: str
    epochs: int
    train_minutes: float
    voc07_map50: float
    coco_ap: float
    note: str = ""


class Log:
    """The commands run, in order, for the report."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(self, command: list[str], env: dict[str, str] | None = None) -> str:
        self.commands.append(shlex.join(command))
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise SystemExit(f"failed: {shlex.join(command)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return done.stdout


def score(log: Log, data: Path, split: str, coco_gt: Path, voc_results: Path, work: Path) -> tuple[float, float]:
    """VOC07 mAP@0.5 (`ssd eval --voc`) and COCO AP (`ssd eval --coco`) of one VOC-style results JSON."""
    voc_json, coco_json = work / "voc-metrics.json", work / "coco-metrics.json"
    classes = ",".join(test_split(data, split)[0])  # the numbering of the results' category ids
    log.run([*SSD, "eval", "--voc", "--data", str(data), "--split", split, "--results", str(voc_results),
             "--metric", "voc07", "--classes", classes, "--json", str(voc_json), "--force"])  # fmt: skip
    coco_results = work / "coco-results.json"
    coco_results.write_text(json.dumps(to_coco_ids(json.loads(voc_results.read_text()), data, split, coco_gt)))
    log.run([*SSD, "eval", "--coco", "--gt", str(coco_gt), "--results", str(coco_results),
             "--json", str(coco_json), "--force"])  # fmt: skip
    voc = json.loads(voc_json.read_text())
    coco = json.loads(coco_json.read_text())
    return float(voc["mAP"]), float(coco["AP"])


def test_split(data: Path, split: str) -> tuple[list[str], list[Path]]:
    """The class names of a VOC split as ssdcli numbers them (category_id 1, 2, ... in `ssd eval --voc` and in
    `ssd eval --checkpoint`'s detections), and its image files, read by ssdcli's own VOC reader."""
    from ssdcli.data.dataset import open_index

    index = open_index(data, split, check_images=False)
    return list(index.class_names[1:]), [record.path for record in index.records]


def to_coco_ids(results: list[dict[str, Any]], data: Path, split: str, coco_gt: Path) -> list[dict[str, Any]]:
    """VOC-style results (image_id = file stem, category_id = 1-based sorted class) in the converted instances
    file's ids (by file name and category name)."""
    gt = json.loads(coco_gt.read_text())
    image_by_stem = {Path(image["file_name"]).stem: image["id"] for image in gt["images"]}
    category_by_name = {category["name"]: category["id"] for category in gt["categories"]}
    names, _ = test_split(data, split)
    return [
        {**r, "image_id": image_by_stem[str(r["image_id"])], "category_id": category_by_name[names[r["category_id"] - 1]]}
        for r in results
    ]


def train_ssdcli(log: Log, args: argparse.Namespace, work: Path) -> tuple[Row, Path]:
    started = time.perf_counter()
    log.run([*SSD, "train", "--data", str(args.data), "--train-split", args.train_split, "--val-split",
             args.val_split, "--time", args.budget, "--workers", str(args.workers), "--out", str(work / "train")])  # fmt: skip
    minutes = (time.perf_counter() - started) / 60
    run = max((work / "train").iterdir(), key=lambda p: p.stat().st_mtime)
    metrics_rows = (run / "metrics.csv").read_text().strip().splitlines()
    check_json = work / "checkpoint-metrics.json"
    log.run([*SSD, "eval", "--checkpoint", str(run / "best.pt"), "--data", str(args.data), "--split",
             args.test_split, "--out", str(work / "eval"), "--json", str(check_json), "--device", "cpu", "--force"])  # fmt: skip
    checked = json.loads(check_json.read_text())
    detections = max((work / "eval").iterdir(), key=lambda p: p.stat().st_mtime) / "detections.json"
    voc07, coco_ap = score(log, args.data, args.test_split, args.coco_gt, detections, work)
    note = f"`--checkpoint`: {checked['mAP']:.4f} / {checked['coco']['AP']:.4f}"
    return Row("ssdcli default (ssd_tiny256)", "256", len(metrics_rows) - 1, minutes, voc07, coco_ap, note), run


def train_yolo(log: Log, args: argparse.Namespace, yolo_data: Path, imgsz: int, work: Path) -> Row:
    """Train and predict in a child process (Ultralytics imports stay out of this one); returns its row."""
    names, images = test_split(args.data, args.test_split)
    job = {
        "model": args.yolo_model,
        "data": str(yolo_data),
        "imgsz": imgsz,
        "hours": parse_duration(args.budget) / 3600,
        "workers": args.workers,
        "project": str(work),
        "images": [str(path) for path in images],
        "names": names,
        "out": str(work / "detections.json"),
    }
    (work / "job.json").write_text(json.dumps(job))
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "False"}
    started = time.perf_counter()
    log.run([sys.executable, __file__, "--yolo-job", str(work / "job.json")], env=env)
    minutes = (time.perf_counter() - started) / 60
    epochs = json.loads((work / "detections.json.epochs").read_text())
    voc07, coco_ap = score(log, args.data, args.test_split, args.coco_gt, work / "detections.json", work)
    model = Path(args.yolo_model).stem
    return Row(f"Ultralytics {model} (from YAML)", str(imgsz), epochs, minutes, voc07, coco_ap, "train + predict")


def yolo_job(path: Path) -> None:
    """The child process of :func:`train_yolo`: Ultralytics' own training and prediction."""
    from ultralytics import YOLO

    job = json.loads(path.read_text())
    model = YOLO(job["model"])
    model.train(data=job["data"], imgsz=job["imgsz"], time=job["hours"], epochs=1000, device="cpu",
                workers=job["workers"], pretrained=False, amp=False, plots=False, project=job["project"],
                name="yolo", exist_ok=True, seed=0, deterministic=False)  # fmt: skip
    run = Path(job["project"]) / "yolo"
    best = YOLO(str(run / "weights" / "best.pt"))
    results = []
    label_to_category = {i: job["names"].index(name) + 1 for i, name in best.names.items()}
    for image in job["images"]:
        found = best.predict(image, imgsz=job["imgsz"], conf=0.001, iou=0.7, max_det=300, device="cpu", verbose=False)[0]
        for (x1, y1, x2, y2), conf, label in zip(found.boxes.xyxy.tolist(), found.boxes.conf.tolist(),
                                                 found.boxes.cls.tolist()):  # fmt: skip
            results.append({"image_id": Path(image).stem, "category_id": label_to_category[int(label)],
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": conf})  # fmt: skip
    Path(job["out"]).write_text(json.dumps(results))
    epochs = len((run / "results.csv").read_text().strip().splitlines()) - 1
    Path(job["out"] + ".epochs").write_text(json.dumps(epochs))


def table(rows: list[Row]) -> str:
    lines = [
        "| model | input | epochs | minutes (train) | VOC07 mAP@0.5 | COCO AP | note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r.model} | {r.input_size} | {r.epochs} | {r.train_minutes:.1f} | {r.voc07_map50:.4f} "
                     f"| {r.coco_ap:.4f} | {r.note} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--yolo-job":
        yolo_job(Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a VOC root (Annotations/, JPEGImages/, ImageSets/Main/)")
    parser.add_argument("--budget", default="10m", help="wall-clock training budget per model (default: 10m)")
    parser.add_argument("--out", type=Path, default=Path("runs/accuracy"))
    parser.add_argument("--train-split", default="trainval")
    parser.add_argument("--val-split", default="test")
    parser.add_argument("--test-split", default="test")
    parser.add_argument("--imgsz", type=int, nargs="+", default=[640, 320], help="Ultralytics input sizes")
    parser.add_argument("--yolo-model", default="yolo26n.yaml", help="Ultralytics model YAML (default: yolo26n)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--skip-ssdcli", action="store_true")
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"error: {args.out}: exists and is not empty; choose a new --out")
    args.out.mkdir(parents=True, exist_ok=True)
    log = Log()
    converted = args.out / "converted"
    log.run([*SSD, "data", "convert", str(args.data), str(converted / "yolo"), "--to", "yolo"])
    log.run([*SSD, "data", "convert", str(args.data), str(converted / "coco"), "--to", "coco"])
    args.coco_gt = converted / "coco" / "annotations" / f"instances_{args.test_split}.json"
    import yaml

    converted_yaml = yaml.safe_load((converted / "yolo" / "data.yaml").read_text())
    yolo_data = converted / "ultralytics.yaml"
    yolo_data.write_text(yaml.safe_dump({
        "path": str((converted / "yolo").resolve()),
        "train": f"images/{args.train_split}",
        "val": f"images/{args.val_split}",
        "names": converted_yaml["names"],
    }))  # fmt: skip
    rows = []
    if not args.skip_ssdcli:
        (args.out / "ssdcli").mkdir()
        row, _ = train_ssdcli(log, args, args.out / "ssdcli")
        rows.append(row)
        print(table(rows), flush=True)
    for imgsz in args.imgsz:
        work = args.out / f"yolo-{imgsz}"
        work.mkdir()
        rows.append(train_yolo(log, args, yolo_data, imgsz, work))
        print(table(rows), flush=True)
    machine = f"{os.cpu_count()} CPU cores ({os.uname().machine}), Python {sys.version.split()[0]}"
    report = (
        f"{table(rows)}\n\nBudget {args.budget} per model, {machine}.\n\nCommands:\n\n```\n"
        + "\n".join(log.commands) + "\n```\n"
    )
    (args.out / "report.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
