"""Write docs/guide.md and its pictures (docs/images/guide_*.png) by running every step of the guide on BCCD.

    .venv/bin/python docs/make_guide.py --data PATH/TO/BCCD_Dataset/BCCD

Each step runs the real `ssd` command in a subprocess, in a scratch folder that holds the data set where the guide's
fetch step puts it (BCCD_Dataset/BCCD), exactly as the guide writes it; the page shows that command and whole tables
of its output, and its picture scaled down to at most 640 px so the repository stays small. The guide is rewritten
from scratch each time, so what it shows is what this version of ssdcli prints. tests/test_guide.py runs the same
steps on a small data set laid out in the same place.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

DOCS = Path(__file__).resolve().parent
IMAGES = DOCS / "images"
MAX_SIDE = 640
DATA = "BCCD_Dataset/BCCD"  # where the fetch step's clone puts the data set, relative to the folder the guide runs in
IMAGE = f"{DATA}/JPEGImages/BloodImage_00000.jpg"
BEST = "runs/train/1/best.pt"
FETCH = "git clone --depth 1 https://github.com/Shenggan/BCCD_Dataset"
INT8_REFUSAL = "file not written"  # the end of the INT8 check's one-line refusal

Excerpt = Callable[[list[str]], list[str]]


def whole() -> Excerpt:
    """Every line the command printed."""
    return lambda lines: lines


def tables(*spans: tuple[str, str | None]) -> Excerpt:
    """Whole tables: each span runs from the line starting with its first title to the line before the one starting
    with its second (None: to the end). A span whose title is missing (no problems found, say) shows nothing."""

    def cut(lines: list[str]) -> list[str]:
        kept: list[str] = []
        for first, after in spans:
            start = next((k for k, line in enumerate(lines) if line.startswith(first)), None)
            if start is None:
                continue
            end = next((k for k in range(start + 1, len(lines)) if after and lines[k].startswith(after)), len(lines))
            kept += lines[start:end]
        return kept

    return cut


@dataclass
class Step:
    title: str
    text: str
    command: str  # as the guide shows it and as it runs, in the guide's folder
    excerpt: Excerpt = field(default_factory=whole)
    pictures: tuple[tuple[str, str], ...] = ()  # (file the command wrote, a glob pattern, name under docs/images)
    output: list[str] = field(default_factory=list)
    seconds: float = 0.0
    refusal: str | None = None  # an outcome the guide explains: the command may end with this one-line error


def steps() -> list[Step]:
    return [
        Step(
            "1. Check the data set",
            "What is in it, and what training would trip on: every image is decoded once, annotation warts are "
            "listed per split and file.",
            f"ssd data check {DATA} --split trainval",
            tables((DATA, "Objects by box size"), ("Problems found", None)),
        ),
        Step(
            "2. See how the default boxes cover the objects",
            "`ssd encode --data` matches every ground-truth box of the split against the default boxes of the model "
            "`ssd train` trains by default (`ssd_tiny256`, also `ssd encode`'s default); objects without a default "
            "box above IoU 0.5 are the ones SSD learns worst.",
            f"ssd encode --data {DATA} --split trainval --visualize coverage.png",
            tables(("Anchor coverage", "By size"), ("By class", "Per feature map")),
            (("coverage.png", "guide_coverage.png"),),
        ),
        Step(
            "3. One image, box by box",
            "The matches of one image, per feature map: ground truth and the default boxes assigned to it.",
            f"ssd encode {IMAGE} --visualize matches.png",
            tables((Path(IMAGE).name, "Encoded target")),
            (("matches.png", "guide_matches.png"),),
        ),
        Step(
            "4. Train",
            "Three epochs here, to keep the guide quick; without `--epochs`, `ssd train` trains for 10 minutes "
            "(`--time` sets another budget) with the schedule fitted to the measured speed, which on BCCD reaches "
            "VOC07 mAP 0.85 (docs/results.md). The run folder `runs/train/1` gets metrics.csv, last.pt and best.pt, "
            "and the pictures curves.png and val_predictions.png.",
            f"ssd train --data {DATA} --train-split trainval --val-split test --epochs 3",
            whole(),
            (("runs/train/1/curves.png", "guide_curves.png"), ("runs/train/1/val_predictions.png", "guide_val_predictions.png")),
        ),
        Step(
            "5. Evaluate, with plots",
            "VOC07 mAP@0.5 with the devkit's rules and the COCO metrics with pycocotools, per class; `--plots` "
            "adds precision-recall curves.",
            f"ssd eval --checkpoint {BEST} --data {DATA} --split test --plots plots",
            tables(("PASCAL VOC AP", "COCO bbox metrics")),
            (("plots/pr_*.png", "guide_pr.png"),),
        ),
        Step(
            "6. Predict",
            "Detections drawn on the image, and the detections as JSON (COCO results and each image's boxes).",
            f"ssd predict {IMAGE} --checkpoint {BEST} --json detections.json",
            whole(),
            ((f"runs/predict/1/{Path(IMAGE).name}", "guide_predict.png"),),
        ),
        Step(
            "7. Export for deployment",
            "The ONNX file is written only after its outputs match PyTorch's on sample images.",
            f"ssd export --checkpoint {BEST} --to onnx --out model.onnx",
        ),
        Step(
            "8. Did the export keep the accuracy?",
            "An exported file is evaluated exactly as its checkpoint.",
            f"ssd eval --onnx model.onnx --data {DATA} --split test",
            tables(("PASCAL VOC AP", "COCO bbox metrics")),
        ),
        Step(
            "9. INT8 for CPUs",
            "The INT8 file is calibrated on the training images and written only when its detections on images held "
            "back from calibration match the FP32 file's (AP@0.5 at least 0.9). A model trained for a few epochs, "
            "as this one, may be refused, with what drifts and what helps; the models of docs/results.md trained "
            "with the default budget pass. Once written, `ssd eval --onnx model_int8.onnx` measures it as above.",
            f"ssd export --checkpoint {BEST} --to onnx --int8 --out model_int8.onnx",
            refusal=INT8_REFUSAL,
        ),
        Step(
            "10. Every export side by side",
            "`ssd benchmark` exports the checkpoint to every target whose package is installed (TorchScript, ONNX, "
            "ONNX INT8 calibrated on `--train-split`, OpenVINO), each verified as `ssd export` verifies it, then "
            "times each form on the CPU (median milliseconds per image at batch 1 and at `--batch-size`) and "
            "evaluates it as `ssd eval` does; `--json` writes the table. A target whose package is missing is a row "
            "saying how to install it, and an INT8 file refused (as in step 9) a row saying why. The times depend on the machine and on what else runs on it: compare the rows of "
            "one run.",
            f"ssd benchmark --checkpoint {BEST} --data {DATA} --split test --train-split trainval --runs 5",
            tables(("ssd benchmark", None)),
        ),
    ]


def run(step: Step, folder: Path) -> None:
    """Run the step's command in ``folder`` as a user would (output not a terminal); SystemExit if it fails."""
    words = shlex.split(step.command)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ssdcli", *words[1:]], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    step.seconds = time.perf_counter() - started
    lines = [line.rstrip().replace(f"{folder}/", "") for line in done.stdout.splitlines()]
    refused = step.refusal is not None and done.returncode == 1 and any(step.refusal in line for line in lines)
    if done.returncode != 0 and not refused:
        raise SystemExit(f"step failed ({done.returncode}): {step.command}\n" + "\n".join(lines[-20:]))
    step.output = [line for line in step.excerpt(lines) if line.strip()]


def picture(folder: Path, pattern: str) -> Path:
    """The first file (by name) the pattern matches in ``folder``; SystemExit if the step wrote none."""
    found = sorted(folder.glob(pattern))
    if not found:
        raise SystemExit(f"no picture {pattern} in {folder}")
    return found[0]


def small_copy(source: Path, name: str) -> Path:
    import cv2

    image = cv2.imread(str(source))
    if image is None:
        raise SystemExit(f"no picture at {source}")
    scale = min(1.0, MAX_SIDE / max(image.shape[:2]))
    if scale < 1.0:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    target = IMAGES / name
    cv2.imwrite(str(target), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = DOCS.parent.parent / "shared" / "data" / "bccd" / "BCCD"
    parser.add_argument("--data", type=Path, default=default, help="the BCCD folder of a clone of BCCD_Dataset")
    args = parser.parse_args()
    data = args.data.resolve()
    if not (data / "JPEGImages").is_dir():
        raise SystemExit(f"BCCD not found at {data}; give --data (the BCCD folder of: {FETCH})")
    work = Path(tempfile.mkdtemp(prefix="ssd-guide-"))
    (work / DATA).parent.mkdir(parents=True)
    (work / DATA).symlink_to(data)
    guide = steps()
    for step in guide:
        print(f"running: {step.command}", flush=True)
        run(step, work)
    IMAGES.mkdir(exist_ok=True)
    shown = {step.title: [small_copy(picture(work, made), name) for made, name in step.pictures] for step in guide}
    (DOCS / "guide.md").write_text(page(guide, shown))
    shutil.rmtree(work, ignore_errors=True)


INTRO = f"""# A custom data set from check to deployment

Every step on BCCD (blood cells, VOC layout, 364 images), with its command, its real output (whole tables) and its
picture. Written by `docs/make_guide.py`, which runs the steps; rerun it to refresh this page. `tests/test_guide.py`
runs every command of this page as written, on a small data set laid out where the first step puts BCCD.

## 0. Get the data

BCCD (Blood Cell Count and Detection) is public: github.com/Shenggan/BCCD_Dataset, MIT licence. One command fetches
it in the layout `ssd` reads (VOC: `Annotations/`, `JPEGImages/`, `ImageSets/Main/` with the splits `trainval` and
`test`); every command below runs in the folder where you ran it:

```bash
{FETCH}
```

Without a network, the same steps run on the built-in synthetic data set: `ssd data synth shapes` writes one in
the VOC layout, to use in place of `{DATA}` below (its image names differ).
"""


def page(guide: list[Step], shown: dict[str, list[Path]]) -> str:
    lines = [INTRO]
    for step in guide:
        lines += [f"## {step.title}", "", step.text, "", "```bash", step.command, "```", ""]
        if step.output:
            lines += ["```text", *step.output, "```", ""]
        for picture in shown.get(step.title, []):
            lines += [f"![{step.title}](images/{picture.name})", ""]
        lines += [f"_{step.seconds:.0f} s on this machine._", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
