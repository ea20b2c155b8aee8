"""PASCAL VOC detection AP, computed exactly as the official devkit's ``VOCevalDet`` does.

Rules (VOC devkit, ``VOCevalDet.m`` / ``VOCap.m``):

* Per class, detections are sorted by score, descending; equal scores keep their input order (stable sort, as
  MATLAB's ``sort``).
* A detection is compared with the ground-truth objects of its image and class; it takes the object with the
  highest overlap (the first one on ties), considering only objects it intersects.
* Overlap uses the devkit's pixel convention: boxes are 1-based inclusive pixel indices, so a box spans
  ``x2 - x1 + 1`` pixels and ``iw = min(x2) - max(x1) + 1``. Boxes given to this module are 0-based continuous
  ``xyxy`` pixels (x1 = xmin - 1, x2 = xmax) and are turned into devkit coordinates (x1 + 1, y1 + 1, x2, y2)
  before the devkit formula is applied.
* Overlap >= threshold with a non-difficult object not yet taken: true positive, and the object is taken.
  With an object already taken: false positive (duplicate). With a difficult object: neither. Below the
  threshold (or no intersecting object): false positive.
* ``npos`` counts the non-difficult objects. recall = cumsum(tp) / npos, precision = cumsum(tp) / cumsum(tp + fp).
* ``voc07``: 11-point AP, the mean over t in MATLAB's ``0:0.1:1`` of the highest precision at recall >= t.
  ``voc12`` (VOC2010 and later): the area under the monotone (non-increasing) precision envelope.

Nothing here reads files; the engine turns annotation and results files into :class:`VocImageGT` and
:class:`~ssdcli.core.detections.Detections`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ssdcli.config import DEFAULT_VOC_IOU, DEFAULT_VOC_METRIC, VOC_METRICS, VocMetric
from ssdcli.core.boxes import xyxy_to_devkit
from ssdcli.core.detections import Detections
from ssdcli.errors import DataError

# The values of MATLAB's ``0:0.1:1`` as the devkit's 11-point loop sees them. MATLAB builds a colon range
# symmetrically (a + k*d for the first half, b - k*d for the second), so the fourth value is 3*0.1 =
# 0.30000000000000004 while 0.6 and 0.7 are the doubles nearest to 0.6 and 0.7 (``np.arange(0, 1.1, 0.1)``, used
# by several Python ports, gives 0.6000000000000001 and 0.7000000000000001 instead, which changes the AP when a
# recall lands exactly on those values).
VOC07_RECALL_THRESHOLDS: tuple[float, ...] = (0.0, 0.1, 0.2, 3 * 0.1, 0.4, 0.5, 1 - 4 * 0.1, 1 - 3 * 0.1, 0.8, 0.9, 1.0)

# Detections are matched in chunks so that the [chunk, Gmax] overlap arrays stay around this many elements.
_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True, eq=False)
class VocImageGT:
    """The ground truth of one image.

    ``boxes_xyxy`` [G, 4] 0-based continuous pixels (x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax);
    ``class_names`` [G]; ``difficult`` [G] bool. Sequences are turned into arrays on construction.
    """

    boxes_xyxy: np.ndarray
    class_names: tuple[str, ...]
    difficult: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        names = tuple(str(name) for name in self.class_names)
        difficult = np.asarray(self.difficult, dtype=bool).reshape(-1)
        if difficult.size == 0 and names:
            difficult = np.zeros(len(names), dtype=bool)
        if not (len(boxes) == len(names) == len(difficult)):
            raise ValueError(
                f"VocImageGT: {len(boxes)} boxes, {len(names)} class names and {len(difficult)} difficult flags"
            )
        object.__setattr__(self, "boxes_xyxy", boxes)
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "difficult", difficult)


@dataclass(frozen=True, eq=False)
class VocClassResult:
    """AP of one class. ``ap`` is NaN when the class has no non-difficult object (``num_gt == 0``).

    ``curve_recall`` and ``curve_precision`` [D] are the cumulative recall and precision after each detection in
    score order (empty without ground truth): the precision-recall curve the AP summarises.
    """

    name: str
    ap: float
    num_gt: int
    num_detections: int
    num_tp: int
    num_fp: int
    curve_recall: np.ndarray = field(default_factory=lambda: np.zeros(0))
    curve_precision: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def recall(self) -> float:
        """Recall at the last detection (NaN without ground truth)."""
        return self.num_tp / self.num_gt if self.num_gt else float("nan")


@dataclass(frozen=True)
class VocResult:
    """Per-class AP and their mean over the classes that have ground truth (``mean_ap``, NaN if none has)."""

    metric: str
    iou_threshold: float
    mean_ap: float
    per_class: tuple[VocClassResult, ...]
    num_images: int
    num_detections: int
    warnings: tuple[str, ...] = ()

    def ap_by_class(self) -> dict[str, float]:
        return {c.name: c.ap for c in self.per_class}

    def mean_ap_of_classes_with(self, min_objects: int) -> float:
        """The mean AP over the classes with at least ``min_objects`` non-difficult objects; ``mean_ap`` when no
        class has that many."""
        counted = [c.ap for c in self.per_class if c.num_gt >= min_objects]
        return float(np.mean(counted)) if counted else self.mean_ap


def average_precision(recall: np.ndarray, precision: np.ndarray, metric: VocMetric = DEFAULT_VOC_METRIC) -> float:
    """AP from the cumulative ``recall`` [N] and ``precision`` [N] of detections sorted by score (devkit rules)."""
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if metric == "voc07":
        ap = 0.0
        for t in VOC07_RECALL_THRESHOLDS:
            above = precision[recall >= t]
            ap = ap + (float(above.max()) if above.size else 0.0) / 11
        return ap
    if metric == "voc12":
        mrec = np.concatenate(([0.0], recall, [1.0]))
        mpre = np.concatenate(([0.0], precision, [0.0]))
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope, non-increasing
        steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
        return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))
    raise ValueError(f"unknown VOC metric {metric!r}; expected one of {', '.join(VOC_METRICS)}")


def _match_class(
    det_image: np.ndarray,
    det_boxes: np.ndarray,
    gt_boxes: np.ndarray,
    gt_valid: np.ndarray,
    gt_difficult: np.ndarray,
    iou_threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Devkit assignment of score-sorted detections of one class.

    ``det_image`` [D] image index, ``det_boxes`` [D, 4] devkit coordinates; ``gt_boxes`` [I, Gmax, 4] devkit
    coordinates padded per image, ``gt_valid`` and ``gt_difficult`` [I, Gmax]. Returns ``tp``, ``fp`` [D] bool.
    The devkit's choice of object does not depend on which objects are taken, so overlaps are computed for all
    detections at once; "taken" reduces to "the first detection (in score order) assigned to that object".
    """
    num_dets, gmax = len(det_image), gt_boxes.shape[1]
    jmax = np.zeros(num_dets, dtype=np.int64)
    ovmax = np.full(num_dets, -np.inf)
    if gmax:
        chunk = max(1, _CHUNK_ELEMENTS // gmax)
        for start in range(0, num_dets, chunk):
            image = det_image[start : start + chunk]
            bb = det_boxes[start : start + chunk, None, :]  # [d, 1, 4]
            g = gt_boxes[image]  # [d, Gmax, 4]
            iw = np.minimum(bb[..., 2], g[..., 2]) - np.maximum(bb[..., 0], g[..., 0]) + 1  # [d, Gmax]
            ih = np.minimum(bb[..., 3], g[..., 3]) - np.maximum(bb[..., 1], g[..., 1]) + 1
            inter = iw * ih
            ua = (
                (bb[..., 2] - bb[..., 0] + 1) * (bb[..., 3] - bb[..., 1] + 1)
                + (g[..., 2] - g[..., 0] + 1) * (g[..., 3] - g[..., 1] + 1)
                - inter
            )
            usable = (iw > 0) & (ih > 0) & gt_valid[image]
            with np.errstate(divide="ignore", invalid="ignore"):
                ov = np.where(usable, inter / np.where(usable, ua, 1.0), -np.inf)
            best = np.argmax(ov, axis=1)  # first maximum, as the devkit's strict ov > ovmax
            jmax[start : start + chunk] = best
            ovmax[start : start + chunk] = ov[np.arange(len(image)), best]
    hit = ovmax >= iou_threshold
    difficult = np.zeros(num_dets, dtype=bool)
    difficult[hit] = gt_difficult[det_image[hit], jmax[hit]]
    candidate = np.flatnonzero(hit & ~difficult)
    tp = np.zeros(num_dets, dtype=bool)
    if candidate.size:
        keys = det_image[candidate] * max(gmax, 1) + jmax[candidate]
        _, first = np.unique(keys, return_index=True)  # first detection of each object, in score order
        tp[candidate[first]] = True
    fp = ~hit | (hit & ~difficult & ~tp)
    return tp, fp


def _pad_class_gt(
    obj_image: np.ndarray,
    obj_boxes: np.ndarray,
    obj_difficult: np.ndarray,
    num_images: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Objects of one class, grouped per image in annotation order and padded.

    ``obj_image`` [N] non-decreasing image index, ``obj_boxes`` [N, 4] devkit coordinates, ``obj_difficult`` [N].
    Returns boxes [I, Gmax, 4], valid [I, Gmax] and difficult [I, Gmax].
    """
    counts = np.bincount(obj_image, minlength=num_images)
    gmax = int(counts.max()) if counts.size else 0
    slot = np.arange(len(obj_image)) - (np.cumsum(counts) - counts)[obj_image]  # position within its image
    boxes = np.zeros((num_images, gmax, 4))
    valid = np.zeros((num_images, gmax), dtype=bool)
    difficult = np.zeros((num_images, gmax), dtype=bool)
    boxes[obj_image, slot] = obj_boxes
    valid[obj_image, slot] = True
    difficult[obj_image, slot] = obj_difficult
    return boxes, valid, difficult


def _concatenate(arrays: list[np.ndarray], shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """``arrays`` reshaped to ``shape`` (-1 first) and concatenated in ``dtype``; empty with no arrays."""
    parts: list[np.ndarray] = [np.asarray(a, dtype=dtype).reshape(shape) for a in arrays]
    return np.concatenate(parts) if parts else np.zeros((0, *shape[1:]), dtype)


def _flatten(
    detections: Sequence[Detections], image_index: Mapping[str, int], names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every detection, in order: image index [D], class index [D] (0-based into ``names``), score [D] and box
    [D, 4] 0-based xyxy; any that does not fit the ground truth and classes is a :class:`DataError`."""
    found = [d for d in detections if len(d)]
    offsets = np.cumsum([0] + [len(d) for d in found])
    for start, d in zip(offsets.tolist(), found):
        if d.image_id not in image_index:
            raise DataError(f"detection {start}: image id {d.image_id!r} is not in the ground truth")
    images = np.array([image_index[d.image_id] for d in found], dtype=np.int64)  # type: ignore[index]
    labels = _concatenate([d.labels for d in found], (-1,), np.int64)
    outside = np.flatnonzero((labels < 1) | (labels > len(names)))
    if outside.size:
        raise DataError(
            f"detection {int(outside[0])}: label {int(labels[outside[0]])} is not a class index "
            f"1..{len(names)} ({', '.join(names)})"
        )
    scores = _concatenate([d.scores for d in found], (-1,), np.float64)
    boxes = _concatenate([d.boxes for d in found], (-1, 4), np.float64)
    _check_values(scores, boxes)
    return np.repeat(images, np.diff(offsets)), labels - 1, scores, boxes


def _check_values(scores: np.ndarray, boxes: np.ndarray) -> None:
    """:class:`DataError` for the first detection whose score [D] or box [D, 4] is not finite, or whose box has
    x2 < x1 or y2 < y1."""
    finite = np.isfinite(scores) & np.isfinite(boxes).all(axis=1)
    if not finite.all():
        raise DataError(f"detection {int(np.flatnonzero(~finite)[0])}: score or box is not a finite number")
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if inverted.any():
        raise DataError(f"detection {int(np.flatnonzero(inverted)[0])}: box has x2 < x1 or y2 < y1")


def voc_evaluate(
    ground_truth: Mapping[str, VocImageGT],
    detections: Sequence[Detections],
    class_names: Sequence[str],
    iou_threshold: float = DEFAULT_VOC_IOU,
    metric: VocMetric = DEFAULT_VOC_METRIC,
) -> VocResult:
    """VOC AP per class and mAP over the classes with ground truth, by the devkit's rules (see the module doc).

    ``ground_truth`` maps image id -> :class:`VocImageGT` (objects of classes not in ``class_names`` are
    ignored). Each :class:`Detections` of ``detections`` must have the ``image_id`` of an image of
    ``ground_truth`` (several may have the same) and ``labels`` 1..len(class_names), label ``l`` being
    ``class_names[l - 1]``; else :class:`DataError`. Detections of one class are ranked by score; equal scores
    keep their order in ``detections`` flattened.
    """
    if metric not in VOC_METRICS:
        raise ValueError(f"unknown VOC metric {metric!r}; expected one of {', '.join(VOC_METRICS)}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"IoU threshold must be in (0, 1], got {iou_threshold}")
    names = tuple(class_names)
    if len(set(names)) != len(names):
        raise ValueError(f"class names are not unique: {names}")
    image_ids = list(ground_truth)
    image_index = {image_id: i for i, image_id in enumerate(image_ids)}
    class_index = {name: c for c, name in enumerate(names)}

    # Every object of every image, flattened in image order then annotation order: [N] and [N, 4].
    images = [ground_truth[i] for i in image_ids]
    sizes = [len(gt.class_names) for gt in images]
    obj_image = np.repeat(np.arange(len(images), dtype=np.int64), sizes)
    obj_class = np.fromiter(
        (class_index.get(n, -1) for gt in images for n in gt.class_names), np.int64, sum(sizes)
    )
    obj_boxes = xyxy_to_devkit(np.concatenate([gt.boxes_xyxy for gt in images] or [np.zeros((0, 4))]))
    obj_difficult = np.concatenate([gt.difficult for gt in images] or [np.zeros(0, dtype=bool)])

    det_image, det_class, det_score, det_boxes = _flatten(detections, image_index, names)
    det_boxes = xyxy_to_devkit(det_boxes)

    per_class = []
    for c, name in enumerate(names):
        of_class = obj_class == c
        gt_boxes, gt_valid, gt_difficult = _pad_class_gt(
            obj_image[of_class], obj_boxes[of_class], obj_difficult[of_class], len(images)
        )
        npos = int((of_class & ~obj_difficult).sum())
        mine = np.flatnonzero(det_class == c)
        order = mine[np.argsort(-det_score[mine], kind="stable")]
        tp, fp = _match_class(det_image[order], det_boxes[order], gt_boxes, gt_valid, gt_difficult, iou_threshold)
        tp_sum = np.cumsum(tp, dtype=np.float64)
        fp_sum = np.cumsum(fp, dtype=np.float64)
        if npos:
            recall = tp_sum / npos
            # Leading detections on difficult objects have tp + fp = 0: precision 0 there (the devkit gets NaN,
            # which MATLAB's max ignores, so the AP is the same).
            precision = np.divide(tp_sum, tp_sum + fp_sum, out=np.zeros_like(tp_sum), where=(tp_sum + fp_sum) > 0)
            ap = average_precision(recall, precision, metric)
        else:
            ap = float("nan")
            recall = precision = np.zeros(0)
        per_class.append(
            VocClassResult(name, ap, npos, len(order), int(tp.sum()), int(fp.sum()), recall, precision)
        )
    scored = [c.ap for c in per_class if c.num_gt]
    mean_ap = float(np.mean(scored)) if scored else float("nan")
    return VocResult(metric, float(iou_threshold), mean_ap, tuple(per_class), len(images), len(det_score))
