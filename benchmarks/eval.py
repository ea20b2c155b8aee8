"""Time COCO and VOC evaluation on generated data: ssdcli's evaluation against pycocotools used directly.

With the optional faster-coco-eval installed, its backend is timed too (and checked against pycocotools).

    .venv/bin/python benchmarks/eval.py                    # 5,000 images x 100 detections
    .venv/bin/python benchmarks/eval.py --images 500       # quicker

Every image gets a few ground-truth boxes and exactly ``--detections`` detections (jittered copies of its
boxes and random boxes, random scores). Times are wall-clock seconds of one run each, single process. COCO goes
through ``run_eval`` as ``ssd eval --coco`` does (both JSON files read and checked; writing them is not timed),
VOC through the metric itself, ``voc_evaluate``, on one ``Detections`` per image.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ssdcli.config import EvalConfig
from ssdcli.core.detections import Detections
from ssdcli.engine.evaluate.run import run_eval
from ssdcli.metrics.coco import CocoResult
from ssdcli.metrics.voc import VocImageGT, voc_evaluate


def generate(images: int, detections: int, categories: int, seed: int = 0):
    """COCO ground truth dict and results list, plus the same scene as VOC ground truth and detections."""
    rng = np.random.default_rng(seed)
    cat_ids = [1 + 3 * k for k in range(categories)]  # non-contiguous ids
    names = [f"class{c}" for c in cat_ids]
    gt = {"images": [], "annotations": [], "categories": [{"id": c, "name": n} for c, n in zip(cat_ids, names)]}
    results: list[dict] = []
    voc_gt: dict[str, VocImageGT] = {}
    voc_dets: list[Detections] = []
    for image_id in range(1, images + 1):
        gt["images"].append({"id": image_id, "width": 640, "height": 480})
        count = int(rng.integers(1, 16))
        wh = rng.uniform(8, 250, size=(count, 2))
        xy = rng.uniform(0, 1, size=(count, 2)) * (np.array([640, 480]) - wh)
        labels = rng.integers(0, categories, size=count)
        for (x, y), (w, h), label in zip(xy, wh, labels):
            gt["annotations"].append(
                {"id": len(gt["annotations"]) + 1, "image_id": image_id, "category_id": cat_ids[label],
                 "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h), "iscrowd": 0}
            )  # fmt: skip
        voc_gt[str(image_id)] = VocImageGT(
            np.concatenate([xy, xy + wh], axis=1), tuple(names[k] for k in labels), np.zeros(count, dtype=bool)
        )
        source = rng.integers(0, count, size=detections)
        jitter = rng.normal(0, 0.1, size=(detections, 4)) * np.concatenate([wh[source], wh[source]], axis=1)
        boxes = np.concatenate([xy[source], xy[source] + wh[source]], axis=1) + jitter  # [D, 4] xyxy
        random_boxes = rng.random(detections) < 0.5
        corner = rng.uniform(0, 500, size=(detections, 2))
        boxes[random_boxes] = np.concatenate([corner, corner + rng.uniform(5, 150, size=(detections, 2))], axis=1)[
            random_boxes
        ]
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
        det_labels = np.where(rng.random(detections) < 0.9, labels[source], rng.integers(0, categories, detections))
        scores = rng.random(detections)
        for box, label, score in zip(boxes.tolist(), det_labels.tolist(), scores.tolist()):
            x1, y1, x2, y2 = box
            results.append({"image_id": image_id, "category_id": cat_ids[label], "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "score": score})  # fmt: skip
        voc_dets.append(Detections(boxes, scores, det_labels + 1, image_id=str(image_id)))  # labels 1..categories
    return gt, results, voc_gt, voc_dets, names


def raw_pycocotools(gt: dict, results: list[dict]) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def coco_files(folder: Path, gt: dict, results: list[dict]) -> tuple[Path, Path]:
    """The ground truth and results as JSON files, as ``ssd eval --coco`` reads them."""
    gt_path, results_path = folder / "instances.json", folder / "results.json"
    gt_path.write_text(json.dumps(gt))
    results_path.write_text(json.dumps(results))
    return gt_path, results_path


def evaluate_coco(gt_path: Path, results_path: Path, per_class: bool = False, backend: str | None = None) -> CocoResult:
    config = EvalConfig(mode="coco", gt=gt_path, results=results_path, per_class=per_class, backend=backend)
    coco = run_eval(config).coco
    assert coco is not None
    return coco


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=100, help="detections per image")
    parser.add_argument("--categories", type=int, default=20)
    args = parser.parse_args()

    t_gen, (gt, results, voc_gt, voc_dets, names) = timed(generate, args.images, args.detections, args.categories)
    print(
        f"{args.images} images, {len(gt['annotations'])} GT boxes, {len(results)} detections, "
        f"{args.categories} categories (generated in {t_gen:.1f} s); {platform.processor() or platform.machine()}"
    )
    t_raw, stats = timed(raw_pycocotools, copy.deepcopy(gt), copy.deepcopy(results))
    with tempfile.TemporaryDirectory() as folder:
        files = coco_files(Path(folder), gt, results)
        t_ours, ours = timed(evaluate_coco, *files)
        t_ours_pc, ours_pc = timed(evaluate_coco, *files, per_class=True)
        faster = None
        if importlib.util.find_spec("faster_coco_eval") is not None:  # the optional backend, when installed
            t_faster, faster = timed(evaluate_coco, *files, backend="faster-coco-eval")
    t_voc07, voc07 = timed(voc_evaluate, voc_gt, voc_dets, names, metric="voc07")
    t_voc12, voc12 = timed(voc_evaluate, voc_gt, voc_dets, names, metric="voc12")
    assert np.allclose(list(ours.metrics.as_dict().values()), stats, atol=1e-12)

    rows = [
        ("COCO, pycocotools COCOeval directly", t_raw, f"AP {stats[0]:.4f}"),
        ("COCO, ssdcli run_eval (ssd eval --coco)", t_ours, f"AP {ours.metrics.ap:.4f}"),
        ("COCO, ssdcli run_eval --per-class", t_ours_pc, f"{len(ours_pc.per_class)} classes"),
        ("VOC07, ssdcli voc_evaluate", t_voc07, f"mAP {voc07.mean_ap:.4f}"),
        ("VOC12, ssdcli voc_evaluate", t_voc12, f"mAP {voc12.mean_ap:.4f}"),
    ]
    if faster is not None:
        assert np.allclose(list(faster.metrics.as_dict().values()), stats, atol=1e-9)
        rows.insert(2, ("COCO, ssdcli run_eval --backend faster-coco-eval", t_faster, f"AP {faster.metrics.ap:.4f}"))
    width = max(len(r[0]) for r in rows)
    print(f"{'evaluation':<{width}}  {'seconds':>8}  result")
    for name, seconds, note in rows:
        print(f"{name:<{width}}  {seconds:>8.2f}  {note}")


if __name__ == "__main__":
    main()
