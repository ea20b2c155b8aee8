"""Evaluating detections against ground truth: COCO metrics (pycocotools) and PASCAL VOC AP (devkit rules).

Two ways in, one computation:

* files: :func:`evaluate_coco_files` (instances JSON + results JSON) and :func:`evaluate_voc_files` (VOC root +
  split + devkit files or results JSON) load, check and evaluate;
* in memory: :func:`evaluate_coco` (ground-truth dict + results dicts) and :func:`evaluate_voc` (image id ->
  :class:`VocImageGT` + :class:`Detection` list). Evaluating a model (training's validation, or evaluating a
  checkpoint) runs the model on a split, builds these detections in memory and calls these functions; nothing
  has to be written to disk.

Every problem with the inputs raises :class:`DataError` naming the file and what is wrong.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ssdcli.data.files import read_json
from ssdcli.data.results_io import DevkitRow, check_coco_results, read_devkit_detections
from ssdcli.data.voc_xml import parse_voc_xml, read_split
from ssdcli.errors import DataError
from ssdcli.metrics.coco import CocoResult, coco_evaluate
from ssdcli.metrics.voc import Detection, VocImageGT, VocMetricName, VocResult, voc_evaluate

PathLike = str | Path


# --------------------------------------------------------------------------------------------------- COCO


def _is_box(value: Any) -> bool:
    return (
        type(value) is list
        and len(value) == 4
        and all(type(v) in (int, float) and math.isfinite(v) for v in value)
    )


def _check_records(gt: Mapping[str, Any], key: str, path: PathLike | None) -> list[Any]:
    records = gt.get(key, [] if key == "annotations" else None)
    if not isinstance(records, list):
        state = "missing" if records is None else f"not a list ({type(records).__name__})"
        raise DataError(f"COCO ground truth: {key!r} is {state}", path=path)
    for i, record in enumerate(records):
        if not isinstance(record, dict) or "id" not in record:
            raise DataError(f"COCO ground truth: {key}[{i}] is not an object with an 'id'", path=path)
    ids = [record["id"] for record in records]
    if len(set(ids)) != len(ids):
        seen: set[Any] = set()
        duplicate = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise DataError(f"COCO ground truth: {key} id {duplicate!r} appears more than once", path=path)
    return records


def check_coco_ground_truth(gt: Any, path: PathLike | None = None) -> dict[str, Any]:
    """Check a COCO instances dict (``images``, ``categories``, ``annotations`` with ids that refer to them).

    Annotations need ``id``, ``image_id``, ``category_id`` and ``bbox`` [x, y, w, h]; ``iscrowd`` and ``area``
    are optional (0 and w * h).
    """
    if not isinstance(gt, dict):
        raise DataError(f"COCO ground truth must be a JSON object with 'images', got {type(gt).__name__}", path=path)
    images = {record["id"] for record in _check_records(gt, "images", path)}
    categories = {record["id"] for record in _check_records(gt, "categories", path)}
    for i, ann in enumerate(_check_records(gt, "annotations", path)):
        for key in ("image_id", "category_id", "bbox"):
            if key not in ann:
                raise DataError(f"COCO ground truth: annotations[{i}] has no {key!r}", path=path)
        if ann["image_id"] not in images:
            raise DataError(
                f"COCO ground truth: annotations[{i}]: image_id {ann['image_id']!r} is not in 'images'", path=path
            )
        if ann["category_id"] not in categories:
            raise DataError(
                f"COCO ground truth: annotations[{i}]: category_id {ann['category_id']!r} is not in 'categories'",
                path=path,
            )
        if not _is_box(ann["bbox"]):
            raise DataError(f"COCO ground truth: annotations[{i}]: bbox must be 4 finite numbers", path=path)
    return gt  # type: ignore[return-value]


def load_coco_ground_truth(path: PathLike) -> dict[str, Any]:
    """Read and check a COCO instances JSON file."""
    return check_coco_ground_truth(read_json(path, "ground-truth file"), path)


def check_coco_result_ids(
    results: Sequence[Mapping[str, Any]], gt: Mapping[str, Any], path: PathLike | None = None
) -> None:
    """Every result's ``image_id`` and ``category_id`` must exist in the ground truth."""
    images = {record["id"] for record in gt["images"]}
    categories = {record["id"] for record in gt["categories"]}
    for i, result in enumerate(results):
        if result["image_id"] not in images:
            raise DataError(f"result {i}: image_id {result['image_id']!r} is not in the ground truth", path=path)
        if result["category_id"] not in categories:
            known = ", ".join(str(c) for c in sorted(categories, key=str))
            raise DataError(
                f"result {i}: category_id {result['category_id']!r} is not in the ground truth (categories: {known})",
                path=path,
            )


def evaluate_coco(
    gt: Mapping[str, Any] | PathLike,
    results: Sequence[Mapping[str, Any]],
    *,
    per_class: bool = False,
    backend: str = "pycocotools",
    results_path: PathLike | None = None,
) -> CocoResult:
    """COCO bbox metrics of ``results`` (``{image_id, category_id, bbox [x, y, w, h], score}`` dicts).

    ``gt`` is a COCO instances dict or the path of an instances JSON file. ``results_path`` only names the
    results in error messages. An empty ``results`` list gives AP and AR 0 (-1 where there is no ground truth).
    """
    gt_path = None
    if isinstance(gt, (str, Path)):
        gt_path, gt = gt, load_coco_ground_truth(gt)
    else:
        gt = check_coco_ground_truth(gt, gt_path)
    results = check_coco_results(results, results_path)
    check_coco_result_ids(results, gt, results_path)
    return coco_evaluate(gt, results, per_class=per_class, backend=backend)


def evaluate_coco_files(
    gt_path: PathLike, results_path: PathLike, *, per_class: bool = False, backend: str = "pycocotools"
) -> CocoResult:
    """COCO bbox metrics of a results JSON file against an instances JSON file."""
    gt = load_coco_ground_truth(gt_path)
    results = read_json(results_path, "results file")
    return evaluate_coco(gt, results, per_class=per_class, backend=backend, results_path=results_path)


# ---------------------------------------------------------------------------------------------------- VOC


def load_voc_ground_truth(root: PathLike, split: str) -> dict[str, VocImageGT]:
    """Image id -> :class:`VocImageGT` for the images of ``root/ImageSets/Main/<split>.txt``, in split order.

    Boxes are 0-based continuous pixels (x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError("VOC data folder not found", path=root)
    ground_truth: dict[str, VocImageGT] = {}
    for image_id in read_split(root, split):
        annotation = parse_voc_xml(root / "Annotations" / f"{image_id}.xml")
        ground_truth[image_id] = VocImageGT(
            boxes_xyxy=[obj.xyxy for obj in annotation.objects],
            class_names=tuple(obj.name for obj in annotation.objects),
            difficult=[obj.difficult for obj in annotation.objects],
        )
    return ground_truth


def voc_class_names(ground_truth: Mapping[str, VocImageGT]) -> tuple[str, ...]:
    """The sorted set of class names of all objects (difficult ones included)."""
    return tuple(sorted({name for gt in ground_truth.values() for name in gt.class_names}))


def evaluate_voc(
    ground_truth: Mapping[str, VocImageGT],
    detections: Sequence[Detection],
    class_names: Sequence[str],
    iou_threshold: float = 0.5,
    metric: VocMetricName = "voc07",
    source: PathLike | None = None,
) -> VocResult:
    """VOC AP per class and mAP (devkit rules, see :mod:`ssdcli.metrics.voc`); ``source`` names the detections
    in error messages."""
    try:
        return voc_evaluate(ground_truth, detections, class_names, iou_threshold=iou_threshold, metric=metric)
    except DataError as error:
        raise DataError(error.message, path=source if source is not None else error.path) from None


def detections_from_devkit_rows(rows: Sequence[DevkitRow], image_ids: Sequence[str], split: str) -> list[Detection]:
    """Devkit rows (1-based inclusive pixel boxes) -> :class:`Detection` (0-based continuous), ids checked."""
    known = set(image_ids)
    detections = []
    for row in rows:
        if row.image_id not in known:
            raise DataError(f"line {row.line}: image id {row.image_id!r} is not in split {split!r}", path=row.path)
        x1, y1, x2, y2 = row.xyxy_devkit
        detections.append(Detection(row.image_id, row.class_name, row.score, (x1 - 1.0, y1 - 1.0, x2, y2)))
    return detections


def detections_from_coco_results(
    results: Sequence[Mapping[str, Any]],
    image_ids: Sequence[str],
    class_names: Sequence[str],
    split: str,
    path: PathLike | None = None,
) -> list[Detection]:
    """COCO-style results for a VOC split -> :class:`Detection`.

    ``image_id``: a string is a VOC image id of the split; an integer is a 0-based index into the split list
    (the line of ``ImageSets/Main/<split>.txt``). ``category_id``: the 1-based index into ``class_names``.
    ``bbox`` [x, y, w, h] in 0-based continuous pixels.
    """
    known = set(image_ids)
    detections = []
    for i, result in enumerate(check_coco_results(results, path)):
        image_id, category_id = result["image_id"], result["category_id"]
        if isinstance(image_id, int):
            if not 0 <= image_id < len(image_ids):
                raise DataError(
                    f"result {i}: image_id {image_id} is not an index into split {split!r} (0..{len(image_ids) - 1})",
                    path=path,
                )
            image_id = image_ids[image_id]
        elif image_id not in known:
            raise DataError(f"result {i}: image_id {image_id!r} is not in split {split!r}", path=path)
        if not 1 <= category_id <= len(class_names):
            raise DataError(
                f"result {i}: category_id {category_id} is not a class index 1..{len(class_names)} "
                f"({', '.join(class_names)})",
                path=path,
            )
        x, y, w, h = (float(v) for v in result["bbox"])
        box_xyxy = (x, y, x + w, y + h)
        detections.append(Detection(image_id, class_names[category_id - 1], float(result["score"]), box_xyxy))
    return detections


def evaluate_voc_files(
    root: PathLike,
    split: str,
    results: PathLike,
    *,
    classes: Sequence[str] | None = None,
    iou_threshold: float = 0.5,
    metric: VocMetricName = "voc07",
) -> VocResult:
    """VOC AP of a results folder of devkit files (``comp4_det_<split>_<class>.txt``) or a COCO-style results
    JSON file against the annotations of ``root`` for ``split``.

    ``classes`` defaults to the sorted set of class names in the split's annotations. Classes without a devkit
    file count as having no detections and are listed in ``warnings``.
    """
    ground_truth = load_voc_ground_truth(root, split)
    class_names = tuple(classes) if classes else voc_class_names(ground_truth)
    if not class_names:
        raise DataError(f"split {split!r} has no objects and no classes were given", path=Path(root))
    results = Path(results)
    image_ids = list(ground_truth)
    warnings: tuple[str, ...] = ()
    if results.is_dir():
        rows, missing = read_devkit_detections(results, class_names, split)
        detections = detections_from_devkit_rows(rows, image_ids, split)
        if missing:
            warnings = (f"{results}: no detection file for class(es) {', '.join(missing)}; counted as no detections",)
    elif results.exists():
        data = read_json(results, "results file")
        detections = detections_from_coco_results(data, image_ids, class_names, split, results)
    else:
        raise DataError("results file or folder not found", path=results)
    result = evaluate_voc(ground_truth, detections, class_names, iou_threshold, metric, source=results)
    return dataclasses.replace(result, warnings=warnings)
