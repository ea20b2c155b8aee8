"""Writing annotations in the three formats ssdcli reads: VOC XML, COCO instances JSON and YOLO label text.

Every writer takes records in the project's box format (xyxy pixels, 0-based continuous; see
:mod:`ssdcli.data.records`) and converts once, the inverse of the readers:

- VOC: xmin = x1 + 1, ymin = y1 + 1, xmax = x2, ymax = y2 (1-based inclusive indices), ``difficult`` from the
  record's ``ignore`` flag; integers stay integers, other values keep 2 decimals.
- COCO: ``bbox`` = [x1, y1, x2 - x1, y2 - y1], ``area`` the box area (there is no segment), ``iscrowd`` from
  ``ignore``; category ids 1..C-1 in class order.
- YOLO: ``class cx cy w h`` normalised by the image size, 6 decimals (under 0.001 px on a 640 px image), and
  optionally a 6th column, the detection's score (what ``ssd predict --save-conf`` writes); ``data.yaml`` names
  the splits (image folders relative to the file) and the classes.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..records import ImageRecord

YOLO_DECIMALS = 6
SCORE_DECIMALS = 5


def _voc_number(value: float) -> str:
    rounded = round(float(value), 2)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.2f}".rstrip("0")


def voc_xml(
    file_name: str,
    width: int,
    height: int,
    boxes: np.ndarray,
    names: Sequence[str],
    difficult: Sequence[bool],
    folder: str = "JPEGImages",
    database: str = "ssdcli",
) -> bytes:
    """A VOC annotation file: ``boxes`` [G, 4] xyxy pixels, with their class ``names`` and ``difficult`` flags."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = file_name
    ET.SubElement(ET.SubElement(root, "source"), "database").text = database
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(int(value))
    ET.SubElement(root, "segmented").text = "0"
    for box, name, hard in zip(np.asarray(boxes).reshape(-1, 4).tolist(), names, difficult):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "1" if hard else "0"
        bndbox = ET.SubElement(obj, "bndbox")
        x1, y1, x2, y2 = box
        for tag, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bndbox, tag).text = _voc_number(value)
    ET.indent(root, space="\t")
    xml: bytes = ET.tostring(root, encoding="utf-8")
    return xml + b"\n"


def record_voc_xml(record: ImageRecord, file_name: str, class_names: Sequence[str]) -> bytes:
    """:func:`voc_xml` of a record whose labels index ``class_names`` (index 0 = background)."""
    names = [class_names[int(label)] for label in record.labels]
    return voc_xml(file_name, record.width, record.height, record.boxes, names, record.ignore.tolist())


def coco_image(image_id: int, file_name: str, width: int, height: int) -> dict[str, Any]:
    return {"id": int(image_id), "file_name": file_name, "width": int(width), "height": int(height)}


def coco_annotations(
    boxes: np.ndarray, category_ids: Sequence[int], crowd: Sequence[bool], image_id: int, first_id: int
) -> list[dict[str, Any]]:
    """COCO annotations of one image, numbered from ``first_id``: ``boxes`` [G, 4] xyxy pixels."""
    # torch: not at import, the format registry is read by `ssd --help`
    from ssdcli.core.boxes import xyxy_to_xywh

    xywh = xyxy_to_xywh(np.asarray(boxes).reshape(-1, 4)).tolist()  # [G, 4]
    return [
        {
            "id": first_id + k,
            "image_id": int(image_id),
            "category_id": int(category),
            "bbox": box,
            "area": box[2] * box[3],
            "iscrowd": int(bool(is_crowd)),
        }
        for k, (box, category, is_crowd) in enumerate(zip(xywh, category_ids, crowd))
    ]


def coco_categories(class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Categories 1..C-1 of ``class_names`` without the background (index 0)."""
    return [{"id": k, "name": name, "supercategory": "object"} for k, name in enumerate(class_names) if k > 0]


def coco_instances(
    images: list[dict[str, Any]], annotations: list[dict[str, Any]], categories: list[dict[str, Any]], description: str
) -> dict[str, Any]:
    return {
        "info": {"description": description, "version": "1"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def yolo_lines(
    boxes: np.ndarray, class_ids: Sequence[int], width: int, height: int, scores: Sequence[float] | None = None
) -> str:
    """YOLO label text: one ``class cx cy w h`` line per box ([G, 4] xyxy pixels), class ids 0-based; with
    ``scores`` [G], each line ends with the box's score (``class cx cy w h score``)."""
    # torch: not at import, the format registry is read by `ssd --help`
    from ssdcli.core.boxes import xyxy_to_cxcywh

    scale = np.array([width, height, width, height], dtype=np.float64)
    normalised = xyxy_to_cxcywh(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)) / scale  # [G, 4]
    ends = [""] * len(normalised) if scores is None else [f" {float(v):.{SCORE_DECIMALS}f}" for v in scores]
    return "".join(
        f"{int(class_id)} " + " ".join(f"{v:.{YOLO_DECIMALS}f}" for v in values) + end + "\n"
        for values, class_id, end in zip(normalised, class_ids, ends)
    )


def yolo_data_yaml(splits: dict[str, str], class_names: Sequence[str]) -> str:
    """A ``data.yaml``: ``path: .``, each split's image folder (relative to the file) and the ``names`` of the
    class ids 0, 1, ... (``class_names`` without the background)."""
    lines = ["path: .", *(f"{split}: {folder}" for split, folder in splits.items()), "names:"]
    lines += [f"  {k}: {json.dumps(name)}" for k, name in enumerate(class_names)]
    return "\n".join(lines) + "\n"
