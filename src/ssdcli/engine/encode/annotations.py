"""One image and its ground truth, for ``ssd encode IMAGE``: a VOC XML file, or one image of a COCO JSON file.

Boxes come out as xyxy pixels, 0-based continuous, in the coordinates of the image file as decoded (VOC's 1-based
inclusive indices are converted by :mod:`ssdcli.data.formats.voc_xml`; COCO files are read by :mod:`ssdcli.data.formats.coco`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ssdcli.data.formats.coco import CocoInstances, read_instances
from ssdcli.data.formats.voc_xml import parse_voc_xml
from ssdcli.data.images import read_image_rgb
from ssdcli.data.records import WarningCounter, clip_boxes
from ssdcli.errors import DataError, UsageError

#: Why a GT is shown but not matched: a VOC ``difficult`` object, a COCO ``iscrowd`` region, or a box with no
#: area inside the image.
FLAG_DIFFICULT = "difficult"
FLAG_CROWD = "crowd"
FLAG_EMPTY = "empty"


@dataclass(frozen=True)
class GroundTruth:
    """One annotated object. ``flag`` is "" for a training target, else why it is not matched."""

    class_name: str
    box_xyxy: tuple[float, float, float, float]
    flag: str = ""


@dataclass(frozen=True)
class ImageAnnotation:
    """An image's size and objects. ``notes`` are repairs worth telling the user about (clipped boxes...)."""

    image_path: Path
    annotation_path: Path
    width: int
    height: int
    objects: tuple[GroundTruth, ...]
    notes: tuple[str, ...] = ()


def read_image(path: str | Path) -> np.ndarray:
    """BGR uint8 [H, W, 3] pixels of an image file, for drawing with OpenCV; decoded by the data layer's one
    reader (:func:`ssdcli.data.images.decode_image`), so ``ssd encode`` sees the pixels training sees."""
    return cv2.cvtColor(read_image_rgb(path), cv2.COLOR_RGB2BGR)


def default_annotation_path(image: Path) -> Path | None:
    """``<root>/Annotations/<stem>.xml`` for an image in ``<root>/JPEGImages/`` (the VOC layout), if it exists."""
    candidate = image.resolve().parent.parent / "Annotations" / f"{image.stem}.xml"
    return candidate if candidate.is_file() else None


def _voc_objects(path: Path) -> tuple[tuple[GroundTruth, ...], tuple[int, int] | None]:
    annotation = parse_voc_xml(path)
    objects = tuple(
        GroundTruth(obj.name, obj.xyxy, FLAG_DIFFICULT if obj.difficult else "") for obj in annotation.objects
    )
    declared = (annotation.width, annotation.height) if annotation.width and annotation.height else None
    return objects, declared


def _coco_image_entry(instances: CocoInstances, image: Path, image_id: int | None) -> dict[str, Any]:
    if image_id is not None:
        return instances.image_entry(image_id)
    by_name = [e for e in instances.images if Path(str(e.get("file_name", ""))).name == image.name]
    if len(by_name) != 1:
        how = "no" if not by_name else "more than one"
        raise UsageError(f"{how} image named {image.name!r} in {instances.path}; pass `image_id` N")
    return by_name[0]


def _coco_objects(
    path: Path, image: Path, image_id: int | None
) -> tuple[tuple[GroundTruth, ...], tuple[int, int] | None]:
    instances = read_instances(path)
    entry = _coco_image_entry(instances, image, image_id)
    objects = tuple(
        GroundTruth(instances.categories[obj.category_id], obj.xyxy, FLAG_CROWD if obj.crowd else "")
        for obj in instances.objects_of(entry["id"])
    )
    width, height = entry.get("width"), entry.get("height")
    declared = (int(width), int(height)) if isinstance(width, (int, float)) and isinstance(height, (int, float)) else None
    return objects, declared


def _clip(objects: tuple[GroundTruth, ...], width: int, height: int) -> tuple[tuple[GroundTruth, ...], int, int]:
    """Clip boxes to the image as training does; boxes left without area are flagged ``empty`` (shown, not
    matched). Returns (objects, clipped, empty)."""
    boxes = np.array([obj.box_xyxy for obj in objects], dtype=np.float64).reshape(-1, 4)  # [G, 4]
    counter = WarningCounter()
    keep = clip_boxes(boxes, width, height, "", counter)  # [G]
    clipped = tuple(
        GroundTruth(obj.class_name, tuple(float(v) for v in box), obj.flag or ("" if kept else FLAG_EMPTY))  # type: ignore[arg-type]
        for obj, box, kept in zip(objects, boxes, keep)
    )
    return clipped, len(counter.clipped), int((~keep).sum())


def read_annotation(
    image: str | Path, annotation: str | Path | None, image_id: int | None = None, image_size: tuple[int, int] | None = None
) -> ImageAnnotation:
    """The objects of ``image`` from a VOC XML file or a COCO JSON file (``image_id``, else found by file name).

    ``image_size`` (width, height) is that of the decoded image; boxes are clipped to it. Without an annotation
    path, ``<root>/Annotations/<stem>.xml`` of a VOC layout is used if it exists.
    """
    image = Path(image)
    if annotation is None:
        annotation = default_annotation_path(image)
        if annotation is None:
            raise UsageError(f"no annotation found for {image}; pass `annotation` FILE (VOC XML or COCO JSON)")
    path = Path(annotation)
    suffix = path.suffix.lower()
    if suffix == ".xml":
        if image_id is not None:
            raise UsageError("`image_id` applies to COCO JSON annotations only")
        objects, declared = _voc_objects(path)
    elif suffix == ".json":
        objects, declared = _coco_objects(path, image, image_id)
    else:
        raise DataError("unknown annotation format: expected a VOC .xml or a COCO .json file", path=path)
    width, height = image_size if image_size is not None else (declared or (0, 0))
    if width <= 0 or height <= 0:
        raise DataError("image size unknown: the annotation declares none", path=path)
    notes = []
    if declared is not None and tuple(declared) != (width, height):
        notes.append(f"the annotation declares {declared[0]}x{declared[1]} px, the image is {width}x{height} px")
    objects, clipped, empty = _clip(objects, width, height)
    if clipped:
        notes.append(f"{clipped} box(es) reaching outside the image clipped")
    if empty:
        notes.append(f"{empty} box(es) with no area inside the image shown but not matched")
    return ImageAnnotation(image, path, int(width), int(height), objects, tuple(notes))
