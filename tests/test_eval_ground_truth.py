"""Evaluating a model's detections on a data set (``ssd eval --checkpoint``, training's validation) scores them
against the data set's files as written: COCO's instances JSON (its ``area``, crowd regions, every box) and VOC's
annotation XML under the devkit's rules (difficult objects ignored, boxes neither clipped nor dropped)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssdcli.config import EvalConfig
from ssdcli.core.detections import Detections
from ssdcli.data.dataset import open_index
from ssdcli.data.results_io import write_devkit_detections
from ssdcli.data.synth import write_synth
from ssdcli.engine.evaluate.run import run_eval
from ssdcli.engine.evaluate.validation import coco_results, devkit_rows, evaluate_detections
from ssdcli.errors import DataError
from test_metrics_coco import STATS_ORDER, raw_cocoeval


def jittered_detections(index, seed: int) -> list[Detections]:
    """Every object of the index found with a jittered box and a random score, some missed, plus false positives."""
    rng = random.Random(seed)
    out = []
    for record in index.records:
        boxes, scores, labels = [], [], []
        for box, label in zip(record.boxes.tolist(), record.labels.tolist()):
            if rng.random() < 0.2:
                continue
            x1, y1, x2, y2 = (v + rng.uniform(-3, 3) for v in box)
            boxes.append([max(x1, 0.0), max(y1, 0.0), max(x2, x1 + 1), max(y2, y1 + 1)])
            scores.append(rng.random())
            labels.append(label)
        for _ in range(rng.randint(0, 2)):
            x, y = rng.uniform(0, record.width / 2), rng.uniform(0, record.height / 2)
            boxes.append([x, y, x + rng.uniform(5, 60), y + rng.uniform(5, 60)])
            scores.append(rng.random() * 0.6)
            labels.append(rng.randint(1, index.num_classes - 1))
        out.append(
            Detections(
                np.array(boxes, dtype=np.float64).reshape(-1, 4),
                np.array(scores),
                np.array(labels, dtype=np.int64),
                image_id=record.image_id,
            )
        )
    return out


def test_coco_numbers_are_cocoeval_on_the_original_file(tmp_path: Path) -> None:
    """COCO's `area` is the segment's, not the box's: APs/APm/APl follow it. The file's crowd regions and a box
    that the loader drops (zero width) count as COCOeval counts them."""
    root = tmp_path / "coco"
    write_synth(root, format="coco", images=40, seed=3)
    path = root / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    for k, ann in enumerate(data["annotations"]):
        if k % 2:
            ann["area"] = 0.3 * ann["area"]  # a segment covers part of its box: medium objects become small
    data["annotations"][0]["iscrowd"] = 1
    first = data["annotations"][1]
    data["annotations"].append({**first, "id": 10_000, "bbox": [first["bbox"][0], first["bbox"][1], 0, 5]})
    path.write_text(json.dumps(data))
    index = open_index(path, None)
    assert index.warnings.zero_area_boxes == 1

    detections = jittered_detections(index, seed=1)
    evaluation = evaluate_detections(index, detections, per_class=True)
    exported = coco_results(index, detections)
    want = dict(zip(STATS_ORDER, raw_cocoeval(data, exported).stats))
    assert evaluation.coco.metrics.as_dict() == pytest.approx(want, abs=1e-12)
    assert 0.2 < want["AP"] < 0.9 and want["APs"] > 0  # a real test: small objects exist and are found
    assert {r["image_id"] for r in exported} <= {image["id"] for image in data["images"]}


CLASSES = ("cat", "dog")


def _object(name: str, box: tuple[int, int, int, int], difficult: bool = False) -> str:
    xmin, ymin, xmax, ymax = box
    return (
        f"<object><name>{name}</name><difficult>{int(difficult)}</difficult><bndbox><xmin>{xmin}</xmin>"
        f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
    )


def _write_voc(root: Path, objects: dict[str, list[str]]) -> Path:
    """A VOC root of 100 x 80 images with these objects (XML snippets), all in the split "test"."""
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    for name, found in objects.items():
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), np.zeros((80, 100, 3), np.uint8))
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>100</width><height>80</height>"
            f"<depth>3</depth></size>{''.join(found)}</annotation>"
        )
    (root / "ImageSets" / "Main" / "test.txt").write_text("".join(f"{name}\n" for name in objects))
    return root


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    """Two 100 x 80 images. a: a cat, a difficult cat covering the image, a dog written as a point (xmin = xmax:
    the loader drops it, the devkit counts a 1-pixel object) and a dog reaching past the right edge (the loader
    clips it, the devkit does not). b: one dog."""
    objects = {
        "a": [
            _object("cat", (11, 11, 40, 40)),
            _object("cat", (1, 1, 100, 80), difficult=True),
            _object("dog", (50, 50, 50, 50)),
            _object("dog", (60, 20, 120, 60)),
        ],
        "b": [_object("dog", (10, 10, 50, 50))],
    }
    return _write_voc(tmp_path / "VOC", objects)


def voc_files(root: Path, results: Path, metric: str = "voc07"):
    """`ssd eval --voc` on ``results`` (devkit files or a results JSON) against ``root``'s test split."""
    config = EvalConfig(mode="voc", data=root, split="test", results=results, classes=CLASSES, metric=metric)
    return run_eval(config).voc


def test_voc_numbers_follow_the_devkit_on_the_annotation_files(voc: Path, tmp_path: Path) -> None:
    index = open_index(voc, "test", classes=CLASSES)
    assert index.warnings.zero_area_boxes == 1 and index.warnings.clipped_boxes == 1
    cat, dog = 1, 2
    detections = [
        Detections(
            np.array(
                [
                    [0, 0, 100, 80],  # on the difficult cat: ignored
                    [0.5, 0, 100, 80],  # again: still ignored (the devkit ignores any number)
                    [60, 5, 80, 25],  # small, inside the difficult cat's box, IoU 0.05: a false positive
                    [10, 10, 40, 40],  # the cat
                    [59, 19, 100, 60],  # the dog past the edge, as a model sees it (clipped)
                ],
                dtype=np.float64,
            ),
            np.array([0.99, 0.98, 0.95, 0.9, 0.8]),
            np.array([cat, cat, cat, cat, dog]),
            image_id=0,
        ),
        Detections(np.array([[9.0, 9, 50, 50]]), np.array([0.7]), np.array([dog]), image_id=1),
    ]
    evaluation = evaluate_detections(index, detections, metric="voc07", per_class=True)
    # The project's evaluator on the files: what `ssd eval --voc --results devkit/` gives.
    devkit = tmp_path / "devkit"
    write_devkit_detections(devkit, devkit_rows(index, detections), CLASSES, "test")
    from_files = voc_files(voc, devkit)
    assert evaluation.voc.ap_by_class() == pytest.approx(from_files.ap_by_class(), abs=1e-12)
    assert [c.num_gt for c in evaluation.voc.per_class] == [1, 3]  # the point counts, the difficult cat does not
    assert evaluation.voc.ap_by_class()["cat"] == pytest.approx(0.5)  # FP then TP; the difficult cat ignored
    # COCO numbers on VOC data: the difficult cat is ignored with the ordinary IoU. As a crowd region
    # (IoU = intersection / detection area) it would also have swallowed the small false positive: AP 1.
    per_class = {c.name: c.ap for c in evaluation.coco.per_class}
    assert per_class["cat"] == pytest.approx(0.5, abs=1e-9)
    assert [c.num_gt for c in evaluation.coco.per_class] == [1, 3]


@pytest.mark.parametrize("metric", ["voc07", "voc12"])
def test_devkit_files_from_to_devkit_give_the_in_memory_ap(tmp_path: Path, metric: str) -> None:
    """Two cats, three detections: the in-memory route (Detections straight to the metric) and the files route
    (Detections.to_devkit, the devkit writer, the reader, Detections.from_devkit) give the AP the devkit's rules
    give by hand.

    By score: 0.9 on cat A (IoU 1: TP), 0.8 on neither (no overlap: FP), 0.7 on cat B (IoU 1: TP). With 2 objects,
    recall 1/2, 1/2, 1 and precision 1, 1/2, 2/3.
    voc07: t = 0, 0.1, ..., 0.5 (6 thresholds) reach recall 1/2, best precision 1; t = 0.6, ..., 1 (5) only
    recall 1, precision 2/3: (6 * 1 + 5 * 2/3) / 11 = 28/33.
    voc12: precision envelope 1 up to recall 1/2, then 2/3 up to 1: 1/2 * 1 + 1/2 * 2/3 = 5/6."""
    root = _write_voc(tmp_path / "VOC", {"c": [_object("cat", (11, 11, 40, 40)), _object("cat", (51, 21, 90, 70))]})
    index = open_index(root, "test", classes=CLASSES)
    found = Detections(
        np.array([[10, 10, 40, 40], [0, 50, 8, 78], [50, 20, 90, 70]], dtype=np.float32),  # A, nothing, B
        np.array([0.9, 0.8, 0.7], dtype=np.float32),
        np.array([1, 1, 1]),
        image_id=index.records[0].image_id,
    )
    in_memory = evaluate_detections(index, [found], metric=metric).voc
    rows = found.to_devkit(CLASSES, image_id="c")
    assert rows[0] == ("c", "cat", pytest.approx(0.9), (11.0, 11.0, 40.0, 40.0))  # the annotation's own numbers
    write_devkit_detections(tmp_path / "devkit", rows, CLASSES, "test")
    from_files = voc_files(root, tmp_path / "devkit", metric)
    expected = 28 / 33 if metric == "voc07" else 5 / 6
    assert in_memory.ap_by_class()["cat"] == pytest.approx(expected, abs=1e-12)
    assert from_files.ap_by_class()["cat"] == pytest.approx(expected, abs=1e-12)
    assert (from_files.per_class[0].num_tp, from_files.per_class[0].num_fp) == (2, 1)


def test_bad_detections_in_files_are_data_errors_naming_the_file(voc: Path, tmp_path: Path) -> None:
    devkit = tmp_path / "devkit"
    devkit.mkdir()
    (devkit / "comp4_det_test_cat.txt").write_text("a 0.9 11 11 40 40\nb 0.5 30 1 20 5\n")
    with pytest.raises(DataError, match="detection 1: box has x2 < x1") as caught:
        voc_files(voc, devkit)
    assert str(caught.value).startswith(f"{devkit}: ")
    (devkit / "comp4_det_test_cat.txt").write_text("a 0.9 11 11 40 40\nz 0.5 1 1 20 5\n")
    with pytest.raises(DataError, match="line 2: image id 'z' is not in split 'test'"):
        voc_files(voc, devkit)


def test_detections_to_coco_and_back() -> None:
    """One Detections type: its COCO records hold xywh boxes, the categories asked for, and read back the same."""
    found = Detections(
        np.array([[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 5.5, 4.25]]),
        np.array([0.9, 0.25]),
        np.array([2, 1]),
        image_id=7,
    )
    records = found.to_coco(category_ids=[0, 18, 44])
    assert records == [
        {"image_id": 7, "category_id": 44, "bbox": [10.0, 20.0, 40.0, 60.0], "score": 0.9},
        {"image_id": 7, "category_id": 18, "bbox": [0.0, 0.0, 5.5, 4.25], "score": 0.25},
    ]
    other = {"image_id": 8, "category_id": 18, "bbox": [1.0, 1.0, 1.0, 1.0], "score": 0.5}
    back = Detections.from_coco([*records, other], 7, labels={18: 1, 44: 2})
    np.testing.assert_array_equal(back.boxes, found.boxes)
    np.testing.assert_array_equal(back.scores, found.scores)
    np.testing.assert_array_equal(back.labels, found.labels)
    assert found.select(np.array([False, True])).to_coco(image_id="a")[0]["image_id"] == "a"
