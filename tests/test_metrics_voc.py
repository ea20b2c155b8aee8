"""PASCAL VOC AP against a literal transcription of the devkit (VOCevalDet.m, VOCap.m) and hand-computed answers.

The reference below works on plain lists in the devkit's own coordinates (1-based inclusive pixel indices) and
follows the MATLAB code line by line, including MATLAB's NaN-ignoring ``max`` and its ``0:0.1:1`` range.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from ssdcli.core.detections import Detections
from ssdcli.errors import DataError
from ssdcli.metrics.voc import VOC07_RECALL_THRESHOLDS, VocImageGT, average_precision, voc_evaluate

# --------------------------------------------------------------------------------------- devkit reference


def matlab_colon(a: float, d: float, b: float) -> list[float]:
    """MATLAB's ``a:d:b`` (colonop.m): first half a + k*d, second half b - k*d, middle (a+b)/2 for even n."""
    n = int(math.floor((b - a) / d + 1e-10))
    x = [0.0] * (n + 1)
    for k in range(n // 2 + 1):
        x[k] = a + k * d
        x[n - k] = b - k * d
    if n % 2 == 0:
        x[n // 2] = (a + b) / 2
    return x


def matlab_max(values: list[float]) -> float | None:
    """MATLAB ``max`` of a vector: NaNs ignored; NaN if all are NaN; None (empty) for an empty vector."""
    if not values:
        return None
    kept = [v for v in values if not math.isnan(v)]
    return max(kept) if kept else math.nan


def devkit_ap07(rec: list[float], prec: list[float]) -> float:
    ap = 0.0
    for t in matlab_colon(0, 0.1, 1):
        p = matlab_max([p for r, p in zip(rec, prec) if r >= t])
        if p is None:
            p = 0.0
        ap = ap + p / 11
    return ap


def devkit_ap(rec: list[float], prec: list[float]) -> float:
    """VOCap.m."""
    mrec = [0.0] + rec + [1.0]
    mpre = [0.0] + prec + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = matlab_max([mpre[i], mpre[i + 1]])
    ap = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            ap = ap + (mrec[i] - mrec[i - 1]) * mpre[i]
    return ap


def devkit_eval_class(
    gt_recs: dict[str, list[tuple[str, list[float], bool]]],
    dets: list[tuple[str, float, list[float]]],
    cls: str,
    minoverlap: float,
    use_07: bool,
) -> float:
    """VOCevalDet for one class.

    ``gt_recs``: image id -> [(class, [x1, y1, x2, y2] devkit, difficult)]; ``dets``: the lines of the class's
    results file in file order, (image id, confidence, [x1, y1, x2, y2] devkit).
    """
    gtids = list(gt_recs)
    gt = {}
    npos = 0
    for image_id in gtids:
        objs = [o for o in gt_recs[image_id] if o[0] == cls]
        gt[image_id] = {"BB": [o[1] for o in objs], "diff": [o[2] for o in objs], "det": [False] * len(objs)}
        npos = npos + sum(1 for o in objs if not o[2])
    si = sorted(range(len(dets)), key=lambda i: -dets[i][1])  # MATLAB sort is stable
    nd = len(dets)
    tp = [0] * nd
    fp = [0] * nd
    for d in range(nd):
        image_id, _, bb = dets[si[d]]
        g = gt[image_id]
        ovmax = -math.inf
        jmax = -1
        for j, bbgt in enumerate(g["BB"]):
            bi = [max(bb[0], bbgt[0]), max(bb[1], bbgt[1]), min(bb[2], bbgt[2]), min(bb[3], bbgt[3])]
            iw = bi[2] - bi[0] + 1
            ih = bi[3] - bi[1] + 1
            if iw > 0 and ih > 0:
                ua = (
                    (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
                    + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1)
                    - iw * ih
                )
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax = ov
                    jmax = j
        if ovmax >= minoverlap:
            if not g["diff"][jmax]:
                if not g["det"][jmax]:
                    tp[d] = 1
                    g["det"][jmax] = True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    tp_c = np.cumsum(tp).tolist() if nd else []
    fp_c = np.cumsum(fp).tolist() if nd else []
    rec = [t / npos for t in tp_c]
    prec = [t / (f + t) if (f + t) else math.nan for t, f in zip(tp_c, fp_c)]
    return devkit_ap07(rec, prec) if use_07 else devkit_ap(rec, prec)


# ---------------------------------------------------------------------------------------- generated cases


def generate_case(seed: int, classes: tuple[str, ...] = ("cat", "dog", "person")):
    """Ground truth and detections in devkit coordinates (multiples of 0.25, so every conversion is exact)."""
    rng = random.Random(seed)
    gt_recs: dict[str, list[tuple[str, list[float], bool]]] = {}
    dets: list[tuple[str, str, float, list[float]]] = []
    for i in range(rng.randint(3, 12)):
        image_id = f"{seed:03d}_{i:04d}"
        objs = []
        for _ in range(rng.choice([0, 1, 2, 3, 5, 8])):  # some images have no objects
            x1, y1 = rng.randint(1, 300), rng.randint(1, 300)
            box = [float(x1), float(y1), float(x1 + rng.randint(0, 120)), float(y1 + rng.randint(0, 120))]
            objs.append((rng.choice(classes), box, rng.random() < 0.15))
            if rng.random() < 0.1:  # the same box twice: equal overlaps, resolved by annotation order
                objs.append((objs[-1][0], list(box), rng.random() < 0.5))
        gt_recs[image_id] = objs
        if rng.random() < 0.15:
            continue  # an image without detections
        for cls, box, _ in objs:
            for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):  # missed, found, found twice or three times
                jitter = [rng.randint(-24, 24) / 4 for _ in range(4)]
                b = [box[k] + jitter[k] for k in range(4)]
                b[2], b[3] = max(b[2], b[0] - 1), max(b[3], b[1] - 1)
                dets.append((image_id, cls if rng.random() < 0.9 else rng.choice(classes), rng.random(), b))
        for _ in range(rng.randint(0, 4)):  # false positives anywhere
            x1, y1 = rng.randint(1, 350), rng.randint(1, 350)
            box = [x1, y1, x1 + rng.randint(0, 80), y1 + rng.randint(0, 80)]
            dets.append((image_id, rng.choice(classes), rng.random(), box))
    for k in range(0, len(dets), 3):  # ties in score, resolved by order
        image_id, cls, score, box = dets[k]
        dets[k] = (image_id, cls, round(score, 1), box)
    rng.shuffle(dets)
    return gt_recs, dets


def one_row(image_id: str, label: int, score: float, box_devkit) -> Detections:
    """One detection as :class:`Detections`, its devkit box turned into 0-based continuous pixels."""
    b = box_devkit
    return Detections(np.array([[b[0] - 1, b[1] - 1, b[2], b[3]]], dtype=np.float64), np.array([score]),
                      np.array([label]), image_id=image_id)  # fmt: skip


def to_library(gt_recs, dets, classes):
    ground_truth = {
        image_id: VocImageGT(
            boxes_xyxy=[(b[0] - 1, b[1] - 1, b[2], b[3]) for _, b, _ in objs],
            class_names=tuple(c for c, _, _ in objs),
            difficult=[d for _, _, d in objs],
        )
        for image_id, objs in gt_recs.items()
    }
    detections = [one_row(i, classes.index(c) + 1, s, b) for i, c, s, b in dets]  # in order: ties keep it
    return ground_truth, detections


def reference_ap(gt_recs, dets, cls, minoverlap, metric):
    class_dets = [(i, s, b) for i, c, s, b in dets if c == cls]
    ap = devkit_eval_class(gt_recs, class_dets, cls, minoverlap, metric == "voc07")
    return ap


@pytest.mark.parametrize("metric", ["voc07", "voc12"])
@pytest.mark.parametrize("iou_threshold", [0.5, 0.7])
@pytest.mark.parametrize("seed", range(12))
def test_matches_devkit_on_generated_cases(seed: int, iou_threshold: float, metric: str) -> None:
    gt_recs, dets = generate_case(seed)
    classes = ("cat", "dog", "person")
    result = voc_evaluate(*to_library(gt_recs, dets, classes), classes, iou_threshold=iou_threshold, metric=metric)
    expected_aps = []
    for got in result.per_class:
        npos = sum(1 for objs in gt_recs.values() for c, _, d in objs if c == got.name and not d)
        assert got.num_gt == npos
        if npos == 0:
            assert math.isnan(got.ap)
            continue
        expected = reference_ap(gt_recs, dets, got.name, iou_threshold, metric)
        if math.isnan(expected):  # every detection on a difficult object: the devkit's NaN is reported as 0
            expected = 0.0
        assert got.ap == pytest.approx(expected, abs=1e-9), got.name
        expected_aps.append(expected)
    assert result.mean_ap == pytest.approx(float(np.mean(expected_aps)), abs=1e-9)


def test_devkit_reference_range_is_matlab_colon() -> None:
    assert VOC07_RECALL_THRESHOLDS == tuple(matlab_colon(0, 0.1, 1))


# ------------------------------------------------------------------------------------------- known answers


def one_image(boxes_devkit, classes=None, difficult=None):
    n = len(boxes_devkit)
    return {
        "img": VocImageGT(
            boxes_xyxy=[(b[0] - 1, b[1] - 1, b[2], b[3]) for b in boxes_devkit],
            class_names=tuple(classes or ["a"] * n),
            difficult=difficult or [False] * n,
        )
    }


def det(score, box_devkit, cls="a", image="img"):
    return one_row(image, {"a": 1, "b": 2}.get(cls, 3), score, box_devkit)


def test_perfect_detections_give_ap_one() -> None:
    boxes = [[1, 1, 10, 10], [20, 20, 60, 40], [5, 50, 25, 90]]
    gt = one_image(boxes, classes=["a", "a", "b"])
    dets = [det(0.9 - 0.1 * k, b, c) for k, (b, c) in enumerate(zip(boxes, ["a", "a", "b"]))]
    for metric in ("voc07", "voc12"):
        result = voc_evaluate(gt, dets, ["a", "b"], metric=metric)
        # The 11-point sum of p / 11 is 1.0000000000000002 in floating point, in the devkit too.
        assert result.ap_by_class() == pytest.approx({"a": 1.0, "b": 1.0}, abs=1e-12)
        assert result.mean_ap == pytest.approx(1.0, abs=1e-12)


def test_hand_computed_precision_recall_and_ap() -> None:
    # 4 objects; detections by score: TP, FP, TP, TP.
    # recall 1/4, 1/4, 2/4, 3/4; precision 1, 1/2, 2/3, 3/4.
    # 11-point: t = 0, 0.1, 0.2 -> 1; t = 0.3 .. 0.7 -> 3/4; t = 0.8 .. 1 -> 0: (3 + 5 * 0.75) / 11.
    # area: envelope 1 up to recall 1/4, then 3/4 up to 3/4: 0.25 * 1 + 0.5 * 0.75 = 0.625.
    boxes = [[1, 1, 10, 10], [21, 1, 30, 10], [41, 1, 50, 10], [61, 1, 70, 10]]
    gt = one_image(boxes)
    dets = [det(0.9, boxes[0]), det(0.8, [100, 100, 110, 110]), det(0.7, boxes[1]), det(0.6, boxes[2])]
    assert voc_evaluate(gt, dets, ["a"], metric="voc07").mean_ap == pytest.approx(6.75 / 11, abs=1e-12)
    assert voc_evaluate(gt, dets, ["a"], metric="voc12").mean_ap == pytest.approx(0.625, abs=1e-12)
    rec = np.array([0.25, 0.25, 0.5, 0.75])
    prec = np.array([1, 0.5, 2 / 3, 0.75])
    assert average_precision(rec, prec, "voc07") == pytest.approx(6.75 / 11, abs=1e-12)
    assert average_precision(rec, prec, "voc12") == pytest.approx(0.625, abs=1e-12)


def test_eleven_point_uses_matlab_recall_thresholds() -> None:
    # 7 of 10 objects found, precision 1: recall 0.7 reaches MATLAB's 0.7 (1 - 3 * 0.1) but not
    # np.arange's 0.7000000000000001: AP = 8 / 11 (t = 0, 0.1, ..., 0.7), as the devkit computes.
    boxes = [[1 + 20 * k, 1, 10 + 20 * k, 10] for k in range(10)]
    dets = [det(1.0 - 0.01 * k, boxes[k]) for k in range(7)]
    assert voc_evaluate(one_image(boxes), dets, ["a"], metric="voc07").mean_ap == pytest.approx(8 / 11, abs=1e-12)


def test_pixel_convention_and_threshold_is_inclusive() -> None:
    # Devkit box [1, 1, 10, 10] covers 10 x 10 pixels; [1, 1, 10, 5] covers 10 x 5 = 50: IoU exactly 0.5 -> TP.
    gt = one_image([[1, 1, 10, 10]])
    assert voc_evaluate(gt, [det(0.5, [1, 1, 10, 5])], ["a"]).per_class[0].num_tp == 1
    # [1, 1, 10, 4] covers 40 pixels: IoU 0.4 -> FP. (Without the +1 it would be 27/81 vs 36/81.)
    result = voc_evaluate(gt, [det(0.5, [1, 1, 10, 4])], ["a"])
    assert (result.per_class[0].num_tp, result.per_class[0].num_fp) == (0, 1)
    # One-pixel boxes: x1 == x2 is a 1-pixel-wide box in devkit coordinates, IoU 1 with itself.
    assert voc_evaluate(one_image([[5, 5, 5, 5]]), [det(0.5, [5, 5, 5, 5])], ["a"], metric="voc12").mean_ap == 1.0


def test_difficult_objects_are_neither_tp_nor_fp_and_duplicates_are_fp() -> None:
    boxes = [[1, 1, 10, 10], [31, 1, 40, 10]]
    gt = one_image(boxes, difficult=[False, True])
    dets = [det(0.9, boxes[1]), det(0.8, boxes[0]), det(0.7, boxes[0])]  # difficult hit, TP, duplicate
    c = voc_evaluate(gt, dets, ["a"], metric="voc12").per_class[0]
    assert (c.num_gt, c.num_tp, c.num_fp) == (1, 1, 1)
    assert c.ap == 1.0  # ignored, TP (recall 1, precision 1), then FP: envelope 1 up to recall 1


def test_detection_takes_best_overlap_even_if_taken() -> None:
    # The devkit assigns to the highest-overlap object even when it is already taken (then FP), never to the
    # second best.
    boxes = [[1, 1, 10, 10], [1, 1, 10, 8]]
    gt = one_image(boxes)
    dets = [det(0.9, [1, 1, 10, 10]), det(0.8, [1, 1, 10, 10])]
    c = voc_evaluate(gt, dets, ["a"]).per_class[0]
    assert (c.num_tp, c.num_fp) == (1, 1)


def test_equal_overlaps_go_to_the_first_object() -> None:
    # Two objects with the same box, the first difficult: the devkit's strict ov > ovmax keeps the first, so
    # the detection lands on the difficult object and is ignored; the second object stays missed.
    gt = one_image([[1, 1, 10, 10], [1, 1, 10, 10]], difficult=[True, False])
    c = voc_evaluate(gt, [det(0.9, [1, 1, 10, 10])], ["a"]).per_class[0]
    assert (c.num_gt, c.num_tp, c.num_fp, c.ap) == (1, 0, 0, 0.0)


def test_class_without_ground_truth_is_nan_and_left_out_of_map() -> None:
    gt = one_image([[1, 1, 10, 10]])
    result = voc_evaluate(gt, [det(0.9, [1, 1, 10, 10]), det(0.5, [1, 1, 9, 9], cls="b")], ["a", "b"], metric="voc12")
    assert result.per_class[0].ap == 1.0 and math.isnan(result.per_class[1].ap)
    assert result.mean_ap == 1.0


def test_no_detections_gives_zero() -> None:
    result = voc_evaluate(one_image([[1, 1, 10, 10]]), [], ["a"], metric="voc12")
    assert result.mean_ap == 0.0 and result.num_detections == 0


def test_bad_detections_are_data_errors() -> None:
    gt = one_image([[1, 1, 10, 10]])
    with pytest.raises(DataError, match="image id 'other'"):
        voc_evaluate(gt, [det(0.9, [1, 1, 10, 10], image="other")], ["a"])
    with pytest.raises(DataError, match="label 3 is not a class index 1..1"):
        voc_evaluate(gt, [det(0.9, [1, 1, 10, 10], cls="zebra")], ["a"])
    with pytest.raises(DataError, match="x2 < x1"):
        voc_evaluate(gt, [det(0.9, [1, 1, 10, 10]), one_row("img", 1, 0.5, (11, 1, 2, 5))], ["a"])
    with pytest.raises(DataError, match="detection 0: score or box is not a finite"):
        voc_evaluate(gt, [one_row("img", 1, math.nan, (2, 2, 2, 5))], ["a"])


def test_detections_of_one_image_may_come_in_several_parts() -> None:
    """Rows of one image split over several Detections, or held in one: the same result (ties keep the order)."""
    boxes = [[1, 1, 10, 10], [21, 1, 30, 10]]
    rows = [(0.5, boxes[0]), (0.5, boxes[0]), (0.5, [100, 100, 110, 110]), (0.4, boxes[1])]
    parts = [det(score, box) for score, box in rows]
    whole = Detections(np.concatenate([p.boxes for p in parts]), np.array([s for s, _ in rows]), np.ones(4, np.int64),
                       image_id="img")  # fmt: skip
    split = voc_evaluate(one_image(boxes), parts, ["a"], metric="voc12")
    joined = voc_evaluate(one_image(boxes), [whole], ["a"], metric="voc12")
    assert split.per_class[0].curve_precision.tolist() == joined.per_class[0].curve_precision.tolist()
    assert (split.num_detections, split.per_class[0].num_tp, split.per_class[0].num_fp) == (4, 2, 2)
