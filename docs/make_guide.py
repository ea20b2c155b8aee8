"""Write docs/guide.md and its pictures (docs/images/guide_*.png) by running every step of the guide on BCCD.

    .venv/bin/python docs/make_guide.py                       # BCCD from ../shared/data/bccd/BCCD, 10 min of training
    .venv/bin/python docs/make_guide.py --data PATH --time 30m

Each step runs the real `ssd` command in a subprocess (as a user would, output not a terminal), keeps a few lines of
its output and its picture, scaled down to at most 640 px so the repository stays small. The guide is rewritten
from scratch each time, so what it shows is what this version of ssdcli prints.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2

DOCS = Path(__file__).resolve().parent
IMAGES = DOCS / "images"
MAX_SIDE = 640


@dataclass
class Step:
    title: str
    text: str
    command: list[str]
    keep: tuple[str, ...] = ()  # output lines containing any of these are shown (all lines if empty, up to 12)
    picture: Path | None = None
    output: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _shown(text: str, work: Path, data: Path) -> str:
    """Paths as a reader would type them: the data set as BCCD, the scratch folder left out."""
    return text.replace(f"{work}/", "").replace(str(work), ".").replace(str(data), "BCCD")


def run(step: Step, cwd: Path, data: Path) -> None:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ssdcli", *step.command], cwd=cwd, capture_output=True, text=True)
    step.seconds = time.perf_counter() - started
    lines = (done.stdout + done.stderr).splitlines()
    if done.returncode != 0:
        raise SystemExit(f"step failed ({done.returncode}): ssd {' '.join(step.command)}\n" + "\n".join(lines[-20:]))
    chosen = [line for line in lines if not step.keep or any(word in line for word in step.keep)]
    step.output = [_shown(line.rstrip(), cwd, data) for line in chosen if line.strip()][:12]


def small_copy(source: Path, name: str) -> Path:
    image = cv2.imread(str(source))
    if image is None:
        raise SystemExit(f"no picture at {source}")
    scale = min(1.0, MAX_SIDE / max(image.shape[:2]))
    if scale < 1.0:
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    target = IMAGES / name
    cv2.imwrite(str(target), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DOCS.parent.parent / "shared" / "data" / "bccd" / "BCCD")
    parser.add_argument("--time", default="10m", help="training budget of the guide's run")
    args = parser.parse_args()
    data = args.data.resolve()
    if not data.is_dir():
        raise SystemExit(f"BCCD not found at {data}; give --data")
    IMAGES.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ssd-guide-"))
    image = next(iter(sorted((data / "JPEGImages").glob("*.jpg"))))
    run_dir = work / "runs" / "train" / "1"
    best = run_dir / "best.pt"
    steps = [
        Step(
            "1. Check the data set",
            "What is in it, and what training would trip on: every image is decoded once, annotation warts are "
            "listed per split and file.",
            ["data", "check", str(data), "--split", "trainval"],
            ("images", "objects", "class", "problem", "zero-area", "near-duplicate", "warning"),
        ),
        Step(
            "2. See how the default boxes cover the objects",
            "`ssd encode --data` matches every ground-truth box of the split against the default boxes of the model "
            "`ssd train` trains by default (`ssd_tiny256`); objects without a default box above IoU 0.5 are the ones "
            "SSD learns worst.",
            ["encode", "--data", str(data), "--split", "trainval", "--model", "ssd_tiny256",
             "--visualize", str(work / "coverage.png")],
            ("GT", "default box", "coverage", "Platelets", "RBC", "WBC", "positives"),
            work / "coverage.png",
        ),
        Step(
            "3. One image, box by box",
            "The matches of one image, per feature map: ground truth and the default boxes assigned to it.",
            ["encode", str(image), "--model", "ssd_tiny256", "--visualize", str(work / "matches.png")],
            ("Platelets", "RBC", "WBC", "matched"),
            work / "matches.png",
        ),
        Step(
            "4. Train within a time budget",
            f"`--time {args.time}` fits the schedule to the budget from the speed of the first steps. The run folder "
            "gets metrics.csv, last.pt and best.pt, and the pictures curves.png and val_predictions.png.",
            ["train", "--data", str(data), "--train-split", "trainval", "--val-split", "test", "--time", args.time,
             "--out", str(work / "runs" / "train")],
            ("run folder", "epoch", "best", "expect", "warning"),
            run_dir / "curves.png",
        ),
        Step(
            "5. Evaluate, with plots",
            "VOC07 mAP@0.5 with the devkit's rules and the COCO metrics with pycocotools, per class; `--plots` "
            "adds precision-recall curves.",
            ["eval", "--checkpoint", str(best), "--data", str(data), "--split", "test", "--plots", str(work / "plots"),
             "--out", str(work / "eval")],
            ("mAP", "Platelets", "RBC", "WBC", "AP "),
            None,
        ),
        Step(
            "6. Predict",
            "Detections drawn on the image, and the detections as JSON (COCO results and each image's boxes).",
            ["predict", str(image), "--checkpoint", str(best), "--out", str(work / "predict"), "--json",
             str(work / "detections.json")],
            ("image", "detections", "wrote", "results"),
            work / "predict" / "1" / image.name,
        ),
        Step(
            "7. Export for deployment, INT8 included",
            "The INT8 file is calibrated on the training images and checked against the FP32 one by its detections on "
            "images held back from calibration.",
            ["export", "--checkpoint", str(best), "--to", "onnx", "--int8", "--out", str(work / "model_int8.onnx")],
        ),
        Step(
            "8. Did the export keep the accuracy?",
            "An exported file is evaluated exactly as its checkpoint.",
            ["eval", "--onnx", str(work / "model_int8.onnx"), "--data", str(data), "--split", "test",
             "--out", str(work / "eval")],
            ("mAP", "Platelets", "RBC", "WBC"),
        ),
    ]
    for step in steps:
        print(f"running: ssd {' '.join(step.command)}", flush=True)
        run(step, work, data)
    pictures = {
        "coverage.png": "guide_coverage.png",
        "matches.png": "guide_matches.png",
        "curves.png": "guide_curves.png",
        "val_predictions.png": "guide_val_predictions.png",
        image.name: "guide_predict.png",
    }
    shown = {}
    for step in steps:
        if step.picture is not None:
            shown[step.title] = [small_copy(step.picture, pictures[step.picture.name])]
    shown[steps[3].title].append(small_copy(run_dir / "val_predictions.png", pictures["val_predictions.png"]))
    pr = sorted((work / "plots").glob("pr_*.png"))
    if pr:
        shown[steps[4].title] = [small_copy(pr[0], "guide_pr.png")]
    write_guide(steps, shown, data)
    shutil.rmtree(work, ignore_errors=True)


def _shown_command(command: list[str], data: Path) -> str:
    return "ssd " + " ".join(c.replace(str(data), "BCCD") if "ssd-guide-" not in c else Path(c).name for c in command)


def write_guide(steps: list[Step], shown: dict[str, list[Path]], data: Path) -> None:
    lines = [
        "# A custom data set from check to deployment",
        "",
        "Every step on BCCD (blood cells, VOC layout, 364 images), with its command, a few lines of its real output "
        "and its picture. Written by `docs/make_guide.py`, which runs the steps; rerun it to refresh this page.",
        "",
    ]
    for step in steps:
        lines += [f"## {step.title}", "", step.text, "", "```bash", _shown_command(step.command, data), "```", ""]
        if step.output:
            lines += ["```text", *step.output, "```", ""]
        for picture in shown.get(step.title, []):
            lines += [f"![{step.title}](images/{picture.name})", ""]
        lines += [f"_{step.seconds:.0f} s on this machine._", ""]
    (DOCS / "guide.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
