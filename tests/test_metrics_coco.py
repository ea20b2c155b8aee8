"""COCO metrics against pycocotools' own COCOeval, run directly on the same generated data."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ssdcli.config import EvalConfig
from ssdcli.engine.evaluate.run import run_eval
from ssdcli.errors import DataError, UsageError
from ssdcli.metrics.coco import COCO_METRIC_KEYS, CocoMetrics, CocoResult, coco_evaluate

CATEGORIES = [{"id": 1, "name": "person"}, {"id": 5, "name": "airplane"}, {"id": 90, "name": "toothbrush"}]

# COCOeval.stats order, written out here independently of the library's table.
STATS_ORDER = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def run_coco_mode(
    folder: Path, gt: dict, results: list, per_class: bool = False, backend: str | None = None
) -> CocoResult:
    """The engine's COCO mode (``ssd eval --coco``): both written as JSON into ``folder``, read, checked, scored."""
    gt_path, results_path = folder / "instances.json", folder / "results.json"
    gt_path.write_text(json.dumps(gt))
    results_path.write_text(json.dumps(results))
    config = EvalConfig(mode="coco", gt=gt_path, results=results_path, per_class=per_class, backend=backend)
    coco = run_eval(config).coco
    assert coco is not None
    return coco


def generate(seed: int, categories=CATEGORIES):
    """A COCO ground truth and results: non-contiguous ids, crowd regions, images without GT or detections."""
    rng = random.Random(seed)
    cat_ids = [c["id"] for c in categories]
    images, annotations, results = [], [], []
    for n in range(rng.randint(6, 14)):
        image_id = 1000 + 7 * n  # non-contiguous image ids
        images.append({"id": image_id, "width": 640, "height": 480, "file_name": f"{image_id}.jpg"})
        objects = []
        for _ in range(rng.choice([0, 0, 1, 3, 6, 12])):  # some images have no ground truth
            side = rng.choice([8, 20, 40, 70, 120, 250])  # small, medium and large objects
            w, h = side * rng.uniform(0.6, 1.4), side * rng.uniform(0.6, 1.4)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            crowd = int(rng.random() < 0.08)
            ann = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": rng.choice(cat_ids),
                "bbox": [x, y, w, h],
                "area": w * h * rng.uniform(0.7, 1.0),  # as for segmentation areas: not the box area
                "iscrowd": crowd,
            }
            annotations.append(ann)
            objects.append(ann)
        if rng.random() < 0.2:
            continue  # no detections on this image
        for ann in objects:
            for _ in range(rng.choice([0, 1, 1, 2])):
                x, y, w, h = ann["bbox"]
                box = [x + rng.gauss(0, 0.1 * w), y + rng.gauss(0, 0.1 * h)]
                box += [w * rng.uniform(0.8, 1.2), h * rng.uniform(0.8, 1.2)]
                category = ann["category_id"] if rng.random() < 0.9 else rng.choice(cat_ids)
                results.append({"image_id": image_id, "category_id": category, "bbox": box, "score": rng.random()})
        for _ in range(rng.randint(0, 5)):
            w, h = rng.uniform(5, 200), rng.uniform(5, 200)
            results.append(
                {
                    "image_id": image_id,
                    "category_id": rng.choice(cat_ids),
                    "bbox": [rng.uniform(0, 600), rng.uniform(0, 400), w, h],
                    "score": round(rng.random(), 1),  # ties
                }
            )
    gt = {"images": images, "annotations": annotations, "categories": copy.deepcopy(categories)}
    return gt, results


def raw_cocoeval(gt: dict, results: list[dict], cat_ids: list[int] | None = None) -> COCOeval:
    """pycocotools used as its documentation shows, on deep copies."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        if cat_ids is not None:
            evaluator.params.catIds = cat_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


@pytest.mark.parametrize("seed", range(6))
def test_named_metrics_equal_raw_cocoeval_stats(seed: int, tmp_path: Path) -> None:
    gt, results = generate(seed)
    ours = run_coco_mode(tmp_path, gt, results)
    stats = raw_cocoeval(gt, results).stats
    assert ours.metrics.as_dict() == pytest.approx(dict(zip(STATS_ORDER, stats)), abs=1e-9)
    named = ours.metrics
    by_field = [named.ap, named.ap50, named.ap75, named.ap_small, named.ap_medium, named.ap_large,
                named.ar1, named.ar10, named.ar100, named.ar_small, named.ar_medium, named.ar_large]  # fmt: skip
    assert by_field == pytest.approx(list(stats), abs=1e-9)
    assert ours.num_images == len(gt["images"]) and ours.num_detections == len(results)


@pytest.mark.parametrize("seed", range(4))
def test_per_class_ap_equals_cocoeval_restricted_to_that_category(seed: int, tmp_path: Path) -> None:
    gt, results = generate(seed)
    ours = run_coco_mode(tmp_path, gt, results, per_class=True)
    assert [c.category_id for c in ours.per_class] == [1, 5, 90]
    assert [c.name for c in ours.per_class] == ["person", "airplane", "toothbrush"]
    for c in ours.per_class:
        alone = raw_cocoeval(gt, results, cat_ids=[c.category_id]).stats[0]  # AP of this category only
        if alone == -1:
            assert math.isnan(c.ap)
        else:
            assert c.ap == pytest.approx(alone, abs=1e-9)
        expected_gt = sum(1 for a in gt["annotations"] if a["category_id"] == c.category_id and not a["iscrowd"])
        assert c.num_gt == expected_gt


def test_per_class_ap_from_precision_array_the_standard_way(tmp_path: Path) -> None:
    gt, results = generate(11)
    raw = raw_cocoeval(gt, results)
    precision = raw.eval["precision"]  # [T, R, K, A, M]
    ours = {c.category_id: c.ap for c in run_coco_mode(tmp_path, gt, results, per_class=True).per_class}
    for k, cat_id in enumerate(raw.params.catIds):
        p = precision[:, :, k, 0, -1]
        expected = float(np.mean(p[p > -1])) if (p > -1).any() else math.nan
        assert ours[cat_id] == pytest.approx(expected, abs=1e-9, nan_ok=True)


def test_category_without_ground_truth_has_nan_ap(tmp_path: Path) -> None:
    gt, results = generate(2)
    gt["categories"].append({"id": 42, "name": "unused"})
    ours = run_coco_mode(tmp_path, gt, results, per_class=True)
    assert math.isnan(ours.per_class[-1].ap) and ours.per_class[-1].num_gt == 0
    assert ours.metrics.ap == pytest.approx(raw_cocoeval(gt, results).stats[0], abs=1e-9)


def test_empty_results_give_zero_not_a_crash(tmp_path: Path) -> None:
    gt, _ = generate(3)
    with pytest.raises(KeyError):  # why this case needs handling: pycocotools' loadRes fails on []
        with contextlib.redirect_stdout(io.StringIO()):
            COCO().loadRes([])
    sizes = [8, 60, 200]  # at least one small, medium and large object, so no metric is -1
    for side in sizes:
        gt["annotations"].append(
            {"id": 10_000 + side, "image_id": gt["images"][0]["id"], "category_id": 5, "bbox": [1, 1, side, side],
             "area": side * side, "iscrowd": 0}
        )  # fmt: skip
    ours = run_coco_mode(tmp_path, gt, [])
    assert ours.metrics.as_dict() == dict.fromkeys(STATS_ORDER, 0.0)
    assert ours.num_detections == 0


def test_json_keys_and_from_stats() -> None:
    assert COCO_METRIC_KEYS == tuple(STATS_ORDER)
    metrics = CocoMetrics.from_stats([float(i) for i in range(12)])
    assert metrics.as_dict() == {key: float(i) for i, key in enumerate(STATS_ORDER)}
    assert metrics.ap_large == 5.0 and metrics.ar_small == 9.0


def test_inputs_are_not_modified_and_nothing_is_printed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    gt, results = generate(4)
    before = copy.deepcopy((gt, results))
    coco_evaluate(gt, results, per_class=True)
    assert (gt, results) == before
    run_coco_mode(tmp_path, gt, results, per_class=True)
    assert capsys.readouterr().out == ""


def test_missing_iscrowd_and_area_default_to_zero_and_box_area(tmp_path: Path) -> None:
    gt, results = generate(5)
    bare = copy.deepcopy(gt)
    for ann in bare["annotations"]:
        del ann["iscrowd"], ann["area"]
    filled = copy.deepcopy(gt)
    for ann in filled["annotations"]:
        ann["iscrowd"], ann["area"] = 0, ann["bbox"][2] * ann["bbox"][3]
    assert run_coco_mode(tmp_path, bare, results).metrics == CocoMetrics.from_stats(raw_cocoeval(filled, results).stats)


def test_ids_not_in_ground_truth_are_data_errors(tmp_path: Path) -> None:
    gt, results = generate(0)
    bad = [dict(results[0], image_id=999_999)]
    with pytest.raises(DataError, match="image_id 999999 is not in the ground truth"):
        run_coco_mode(tmp_path, gt, bad)
    bad = [dict(results[0], category_id=2)]
    with pytest.raises(DataError, match="category_id 2 is not in the ground truth") as caught:
        run_coco_mode(tmp_path, gt, bad)
    assert str(caught.value).startswith(f"{tmp_path / 'results.json'}: ")


def test_inconsistent_ground_truth_is_a_data_error(tmp_path: Path) -> None:
    gt, results = generate(0)
    gt["annotations"].append(dict(gt["annotations"][0]))  # duplicate annotation id
    with pytest.raises(DataError, match="appears more than once"):
        run_coco_mode(tmp_path, gt, results)
    with pytest.raises(DataError, match="'images' is missing"):
        run_coco_mode(tmp_path, {"categories": []}, [])


def test_faster_coco_eval_backend_says_how_to_install() -> None:
    if importlib.util.find_spec("faster_coco_eval") is not None:
        pytest.skip("faster-coco-eval is installed")
    gt, results = generate(0)
    with pytest.raises(UsageError, match="pip install faster-coco-eval"):
        coco_evaluate(gt, results, backend="faster-coco-eval")


@pytest.mark.parametrize("seed", range(4))
def test_faster_coco_eval_backend_gives_pycocotools_numbers(seed: int, tmp_path: Path) -> None:
    """The optional backend (pip install faster-coco-eval) against pycocotools' own COCOeval."""
    pytest.importorskip("faster_coco_eval")
    gt, results = generate(seed)
    faster = run_coco_mode(tmp_path, gt, results, per_class=True, backend="faster-coco-eval")
    stats = raw_cocoeval(gt, results).stats
    assert faster.metrics.as_dict() == pytest.approx(dict(zip(STATS_ORDER, stats)), abs=1e-9)
    for c in faster.per_class:
        alone = raw_cocoeval(gt, results, cat_ids=[c.category_id]).stats[0]
        if alone == -1:
            assert math.isnan(c.ap)
        else:
            assert c.ap == pytest.approx(alone, abs=1e-9)
