"""Accuracy side by side: ssdcli's default recipe and Ultralytics YOLO, trained from scratch on the same data set
with the same wall-clock budget on the same machine, scored by the same `ssd eval` commands on the same split.

    pip install -e '.[accuracy-bench]'     # Ultralytics: for this benchmark only, never needed by ssdcli
    python benchmarks/accuracy.py ../shared/data/bccd/BCCD --budget 10m --out runs/accuracy [--imgsz 640 320]
    python benchmarks/accuracy.py --suite ../shared/data --budget 10m --out runs/suite [--imgsz 320 640]

With ``--suite DIR`` every data set under DIR (each folder holding a VOC root: ``DIR/NAME/ROOT/Annotations``) is
run in turn, with checkpoints chosen on ``val`` and scores on ``test`` (the splits every set there has), into
``OUT/NAME/``; each set's rows are kept in ``OUT/NAME/rows.json``, so the same command run again skips what is
done (add ``--skip-ultralytics`` to run ssdcli alone first, then the same command without it). The suite's
table has one line per set (ssdcli, and the better of Ultralytics' input sizes) and the mean over the sets.
``--ssd-args="--img-size 320"`` (with ``=``: the value starts with dashes) trains a variant of the recipe (its rows
are named after the options).

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
from dataclasses import asdict, dataclass
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


def to_coco_ids(results: list[dict[str, Any]] | dict[str, Any], data: Path, split: str, coco_gt: Path) -> list[dict[str, Any]]:
    """VOC-style results (image_id = file stem; category_id numbering the file's own ``categories`` when it has
    them, else 1-based in the split's class order) in the converted instances file's ids (by file name and
    category name)."""
    gt = json.loads(coco_gt.read_text())
    image_by_stem = {Path(image["file_name"]).stem: image["id"] for image in gt["images"]}
    category_by_name = {category["name"]: category["id"] for category in gt["categories"]}
    if isinstance(results, dict):
        name_of = {category["id"]: category["name"] for category in results["categories"]}
        results = results["results"]
    else:
        names, _ = test_split(data, split)
        name_of = {i + 1: name for i, name in enumerate(names)}
    return [
        {**r, "image_id": image_by_stem[str(r["image_id"])], "category_id": category_by_name[name_of[r["category_id"]]]}
        for r in results
    ]


def ssdcli_name(args: argparse.Namespace) -> str:
    """The row name of ssdcli's recipe: the default, or the default with ``--ssd-args``."""
    return f"ssdcli `{args.ssd_args}`" if args.ssd_args else "ssdcli default (ssd_tiny256)"


def train_ssdcli(log: Log, args: argparse.Namespace, work: Path) -> tuple[Row, Path]:
    started = time.perf_counter()
    log.run([*SSD, "train", "--data", str(args.data), "--train-split", args.train_split, "--val-split",
             args.val_split, "--time", args.budget, "--workers", str(args.workers), "--out", str(work / "train"),
             *shlex.split(args.ssd_args)])  # fmt: skip
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
    model = json.loads((run / "config.json").read_text())["model"]
    input_size = str(model.get("img_size") or model["arch"])  # the architecture's own size unless set
    return Row(ssdcli_name(args), input_size, len(metrics_rows) - 1, minutes, voc07, coco_ap, note), run


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
    dropped_file = work / "detections.json.dropped"
    dropped = json.loads(dropped_file.read_text()) if dropped_file.exists() else 0
    note = "train + predict" + (f"; {dropped} predicted boxes without area dropped" if dropped else "")
    return Row(f"Ultralytics {model} (from YAML)", str(imgsz), epochs, minutes, voc07, coco_ap, note)


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
    results, dropped = [], 0
    label_to_category = {i: job["names"].index(name) + 1 for i, name in best.names.items()}
    for image in job["images"]:
        found = best.predict(image, imgsz=job["imgsz"], conf=0.001, iou=0.7, max_det=300, device="cpu", verbose=False)[0]
        for (x1, y1, x2, y2), conf, label in zip(found.boxes.xyxy.tolist(), found.boxes.conf.tolist(),
                                                 found.boxes.cls.tolist()):  # fmt: skip
            if x2 <= x1 or y2 <= y1:  # no area: it can match no object, and `ssd eval` refuses it
                dropped += 1
                continue
            results.append({"image_id": Path(image).stem, "category_id": label_to_category[int(label)],
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": conf})  # fmt: skip
    Path(job["out"]).write_text(json.dumps(results))
    Path(job["out"] + ".dropped").write_text(json.dumps(dropped))
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


def voc_roots(suite: Path) -> dict[str, Path]:
    """The data sets of a suite folder: ``NAME -> NAME/ROOT`` for every ``ROOT`` with ``Annotations/`` and
    ``ImageSets/Main/``, in name order."""
    roots = {}
    for folder in sorted(p for p in suite.iterdir() if p.is_dir()):
        found = [p for p in sorted(folder.iterdir()) if (p / "Annotations").is_dir() and (p / "ImageSets" / "Main").is_dir()]
        if found:
            roots[folder.name] = found[0]
    if not roots:
        raise SystemExit(f"error: {suite}: no data set with Annotations/ and ImageSets/Main/ under its folders")
    return roots


def run_set(args: argparse.Namespace, out: Path) -> list[Row]:
    """Every model of one data set into ``out``; rows already in ``out/rows.json`` are kept, not run again."""
    out.mkdir(parents=True, exist_ok=True)
    done_file = out / "rows.json"
    rows = [Row(**row) for row in json.loads(done_file.read_text())] if done_file.exists() else []
    done = {(row.model, row.input_size if row.model.startswith("Ultralytics") else "") for row in rows}
    log = Log()
    converted = out / "converted"
    if not (converted / "coco").exists():
        log.run([*SSD, "data", "convert", str(args.data), str(converted / "yolo"), "--to", "yolo", "--force"])
        log.run([*SSD, "data", "convert", str(args.data), str(converted / "coco"), "--to", "coco", "--force"])
    args.coco_gt = converted / "coco" / "annotations" / f"instances_{args.test_split}.json"

    def keep(row: Row) -> None:
        rows.append(row)
        done_file.write_text(json.dumps([asdict(r) for r in rows], indent=1))
        print(table(rows), flush=True)

    ssd_work = out / ("ssdcli" if not args.ssd_args else "ssdcli-" + "".join(c if c.isalnum() else "_" for c in args.ssd_args))
    if not args.skip_ssdcli and (ssdcli_name(args), "") not in done:
        if ssd_work.exists():
            raise SystemExit(f"error: {ssd_work}: left by an unfinished run; remove it to run it again")
        ssd_work.mkdir()
        keep(train_ssdcli(log, args, ssd_work)[0])
    imgsizes = [] if args.skip_ultralytics else args.imgsz
    for imgsz in imgsizes:
        model = f"Ultralytics {Path(args.yolo_model).stem} (from YAML)"
        if (model, str(imgsz)) in done:
            continue
        import yaml

        converted_yaml = yaml.safe_load((converted / "yolo" / "data.yaml").read_text())
        yolo_data = converted / "ultralytics.yaml"
        yolo_data.write_text(yaml.safe_dump({
            "path": str((converted / "yolo").resolve()),
            "train": f"images/{args.train_split}",
            "val": f"images/{args.val_split}",
            "names": converted_yaml["names"],
        }))  # fmt: skip
        work = out / f"yolo-{imgsz}"
        if work.exists():
            raise SystemExit(f"error: {work}: left by an unfinished run; remove it to run it again")
        work.mkdir()
        keep(train_yolo(log, args, yolo_data, imgsz, work))
    machine = f"{os.cpu_count()} CPU cores ({os.uname().machine}), Python {sys.version.split()[0]}"
    with (out / "report.md").open("a") as report:
        report.write(f"{table(rows)}\n\nBudget {args.budget} per model, {machine}.\n\nCommands:\n\n```\n"
                     + "\n".join(log.commands) + "\n```\n")  # fmt: skip
    return rows


def suite_table(by_set: dict[str, list[Row]]) -> str:
    """One line per set: ssdcli's rows and the better Ultralytics input size; the mean over the sets."""
    ssd_models = sorted({r.model for rows in by_set.values() for r in rows if not r.model.startswith("Ultralytics")})
    header = "| set | " + " | ".join(f"{m} mAP@0.5 / AP" for m in ssd_models) + " | Ultralytics (better size) mAP@0.5 / AP |"
    lines = [header, "|---|" + "---:|" * (len(ssd_models) + 1)]
    sums: dict[str, list[tuple[float, float]]] = {}
    for name, rows in by_set.items():
        cells = []
        for model in ssd_models:
            found = [r for r in rows if r.model == model]
            cells.append(f"{found[0].voc07_map50:.3f} / {found[0].coco_ap:.3f}" if found else "-")
            if found:
                sums.setdefault(model, []).append((found[0].voc07_map50, found[0].coco_ap))
        yolo = [r for r in rows if r.model.startswith("Ultralytics")]
        if yolo:
            best = max(yolo, key=lambda r: r.voc07_map50)
            cells.append(f"{best.voc07_map50:.3f} / {best.coco_ap:.3f} ({best.input_size} px)")
            sums.setdefault("yolo", []).append((best.voc07_map50, best.coco_ap))
        else:
            cells.append("-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    mean_cells = []
    for key in [*ssd_models, "yolo"]:
        values = sums.get(key, [])
        complete = len(values) == len(by_set)
        mean_cells.append(
            f"{sum(v[0] for v in values) / len(values):.3f} / {sum(v[1] for v in values) / len(values):.3f}"
            if values and complete else "-"
        )
    lines.append("| **mean** | " + " | ".join(mean_cells) + " |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--yolo-job":
        yolo_job(Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="?", help="a VOC root (Annotations/, JPEGImages/, ImageSets/Main/)")
    parser.add_argument("--suite", type=Path, help="a folder of data sets (each NAME/ROOT a VOC root): run them all")
    parser.add_argument("--budget", default="10m", help="wall-clock training budget per model (default: 10m)")
    parser.add_argument("--out", type=Path, default=Path("runs/accuracy"))
    parser.add_argument("--train-split", help="default: trainval (train with --suite)")
    parser.add_argument("--val-split", help="default: test (val with --suite)")
    parser.add_argument("--test-split", default="test")
    parser.add_argument("--imgsz", type=int, nargs="+", default=[640, 320], help="Ultralytics input sizes")
    parser.add_argument("--yolo-model", default="yolo26n.yaml", help="Ultralytics model YAML (default: yolo26n)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--ssd-args", default="", help="more `ssd train` options: a variant of the recipe")
    parser.add_argument("--sets", help="with --suite: only these sets (comma-separated names)")
    parser.add_argument("--skip-ssdcli", action="store_true")
    parser.add_argument("--skip-ultralytics", action="store_true")
    args = parser.parse_args()
    if (args.data is None) == (args.suite is None):
        parser.error("give one data set (DATA) or --suite DIR")
    args.train_split = args.train_split or ("train" if args.suite else "trainval")
    args.val_split = args.val_split or ("val" if args.suite else "test")
    if args.data is not None:
        if args.out.exists() and any(args.out.iterdir()):
            raise SystemExit(f"error: {args.out}: exists and is not empty; choose a new --out")
        run_set(args, args.out)
        print((args.out / "report.md").read_text())
        return
    roots = voc_roots(args.suite)
    wanted = args.sets.split(",") if args.sets else list(roots)
    unknown = sorted(set(wanted) - set(roots))
    if unknown:
        raise SystemExit(f"error: --sets: {', '.join(unknown)} not in {args.suite} (it has {', '.join(roots)})")
    by_set = {}
    for name in wanted:
        args.data = roots[name]
        by_set[name] = run_set(args, args.out / name)
    summary = suite_table(by_set)
    (args.out / "suite.md").write_text(summary + "\n")
    print(summary)


if __name__ == "__main__":
    main()
