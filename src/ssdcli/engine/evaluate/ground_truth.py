"""Ground truth for evaluation, loaded and checked: COCO instances (a file or a dict) and the results' ids against
them, VOC annotations of a split as the devkit reads them, and the ground truth of a data set index in both forms.

Every problem raises :class:`DataError` naming the file and what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssdcli.core.boxes import xyxy_to_xywh
from ssdcli.data.formats.coco import read_instances
from ssdcli.data.formats.voc_xml import parse_voc_xml, read_split
from ssdcli.data.records import DatasetIndex
from ssdcli.errors import DataError
from ssdcli.metrics.voc import VocImageGT

PathLike = str | Path
DIFFICULT = "difficult"  # the flag of VOC's difficult objects in the COCO ground truth built here


# --------------------------------------------------------------------------------------------------- COCO


def load_coco_ground_truth(path: PathLike) -> dict[str, Any]:
    """A COCO instances JSON file read and checked by the data set reader (:func:`ssdcli.data.formats.coco.read_instances`,
    as training reads it), and what pycocotools needs besides: image ids and annotation ids each given once."""
    instances = read_instances(path, "ground-truth file")
    problem = instances.evaluation_problem()
    if problem is not None:
        raise DataError(f"COCO ground truth: {problem}", path=instances.path)
    return instances.data


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


def coco_ids_by_name(gt: Mapping[str, Any]) -> dict[str, list[int]]:
    """Category name -> the ground truth's ids of it (in file order; a name may be given more than once)."""
    ids_of: dict[str, list[int]] = {}
    for record in gt["categories"]:
        ids_of.setdefault(str(record.get("name", "")), []).append(record["id"])
    return ids_of


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
            boxes_xyxy=np.asarray([obj.xyxy for obj in annotation.objects], dtype=np.float64),
            class_names=tuple(obj.name for obj in annotation.objects),
            difficult=np.asarray([obj.difficult for obj in annotation.objects], dtype=bool),
        )
    return ground_truth


def voc_class_names(ground_truth: Mapping[str, VocImageGT]) -> tuple[str, ...]:
    """The sorted set of class names of all objects (difficult ones included)."""
    return tuple(sorted({name for gt in ground_truth.values() for name in gt.class_names}))


# ------------------------------------------------------------------------------------------ a data set index


def voc_ground_truth(index: DatasetIndex) -> dict[str, VocImageGT]:
    """Ground truth for the VOC metric, image id string -> :class:`VocImageGT`.

    VOC data: the split's annotation files as the devkit reads them (every object as written, difficult ones
    flagged; boxes neither clipped nor dropped), so that the numbers equal ``ssd eval --voc`` on the same
    detections. COCO data (no devkit): the index's records, crowd objects as difficult ones.
    """
    if index.format == "voc":
        return load_voc_ground_truth(index.root, index.split)
    names = index.class_names
    return {
        str(r.source_id): VocImageGT(r.boxes, tuple(names[int(label)] for label in r.labels), r.ignore) for r in index.records
    }


def coco_ground_truth(index: DatasetIndex, ground_truth: Mapping[str, VocImageGT]) -> dict[str, Any]:
    """The ground truth of :func:`voc_ground_truth` as a COCO dict, for data without an instances file (VOC):
    image ids are the records' ``image_id``, category ids the labels 1..C-1; difficult objects are flagged
    ``"difficult"`` (not ``iscrowd``, whose IoU differs) for ``coco_evaluate(ignore_key=DIFFICULT)``, which
    ignores them as the devkit does."""
    label_of = {name: label for label, name in enumerate(index.class_names) if label > 0}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for record in index.records:
        images.append({"id": record.image_id, "width": record.width, "height": record.height})
        found = ground_truth[str(record.source_id)]
        boxes = xyxy_to_xywh(np.asarray(found.boxes_xyxy, dtype=np.float64).reshape(-1, 4)).tolist()  # [G, 4]
        for box, name, difficult in zip(boxes, found.class_names, found.difficult.tolist()):
            if name not in label_of:
                continue  # a class the model does not know: not evaluated, as in the VOC metric
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": record.image_id,
                    "category_id": label_of[name],
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                    DIFFICULT: int(difficult),
                }
            )
    categories = [{"id": label, "name": name} for name, label in label_of.items()]
    return {"images": images, "annotations": annotations, "categories": categories}
