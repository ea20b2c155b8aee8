"""COCO adapter: an instances JSON file and its image folder as a :class:`DatasetIndex`.

Layout found by :func:`find_coco` (the one ``ssd data synth --format coco`` writes)::

    ROOT/annotations/instances_<split>.json
    ROOT/<split>/<file_name>               (or ROOT/images/<split>/<file_name>)

COCO's own release fits it with split names such as ``train2017`` and ``val2017``.

Boxes: COCO ``bbox`` is [x, y, w, h] in continuous pixels; records hold xyxy (x2 = x + w). A box with w or h
of 0 is counted as zero-area and dropped; a negative w or h is an error. ``iscrowd`` objects are kept with
``ignore = True``. Category ids need not be contiguous: labels are 1..C-1 in the order of the categories
(sorted by id, or the order of ``classes``) and ``DatasetIndex.category_ids[label]`` gives the id back.
The JSON is read with :mod:`json` (pycocotools prints while loading).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssdcli.errors import DataError

from .files import read_json

from .records import (
    BACKGROUND,
    DatasetIndex,
    WarningCounter,
    check_image_file,
    image_size_from_header,
    make_record,
    normalise_classes,
    unknown_class_hint,
)

_PREFIX = "instances_"


def coco_splits(root: str | Path) -> list[str]:
    """Split names of the files ``root/annotations/instances_<split>.json`` (sorted)."""
    folder = Path(root) / "annotations"
    return sorted(p.stem[len(_PREFIX) :] for p in folder.glob(f"{_PREFIX}*.json")) if folder.is_dir() else []


def split_of(annotations_json: str | Path) -> str:
    """The split a file ``instances_<split>.json`` is named after (else the file's stem)."""
    stem = Path(annotations_json).stem
    return stem[len(_PREFIX) :] if stem.startswith(_PREFIX) else stem


def find_coco(root: str | Path, split: str) -> tuple[Path, Path]:
    """(annotations JSON, image folder) of a split under a COCO-layout root (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError("data set folder not found", path=root)
    annotations_json = root / "annotations" / f"{_PREFIX}{split}.json"
    if not annotations_json.is_file():
        found = coco_splits(root)
        hint = f" (splits found: {', '.join(found)})" if found else ""
        raise DataError(f"annotation file of split {split!r} not found{hint}", path=annotations_json)
    return annotations_json, images_dir_for(annotations_json)


def images_dir_for(annotations_json: Path) -> Path:
    """The image folder of an annotations file: ROOT/<split>/ or ROOT/images/<split>/ for
    ROOT/annotations/instances_<split>.json, else the folder holding the JSON file."""
    root = annotations_json.parent.parent
    split = split_of(annotations_json)
    for candidate in (root / split, root / "images" / split):
        if candidate.is_dir():
            return candidate
    return annotations_json.parent


def _read_json(path: Path) -> dict[str, Any]:
    data = read_json(path, "annotation file")
    if not isinstance(data, dict):
        raise DataError("malformed COCO JSON: the top level is not an object", path=path)
    return data


def _list(data: dict[str, Any], key: str, path: Path, required: bool = True) -> list[Any]:
    value = data.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise DataError(f"malformed COCO JSON: {key!r} is missing or not a list", path=path)
    return value


def _field(entry: Any, where: str, key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    if not isinstance(entry, dict):
        raise DataError(f"malformed COCO JSON: {where} is not an object", path=path)
    value = entry.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f"malformed COCO JSON: {where} has no valid {key!r} (got {value!r})", path=path)
    return value


def _is_box(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )


def _is_size(value: Any) -> bool:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return numeric and value >= 1 and value == int(value)


def _categories(categories: list[Any], path: Path) -> dict[int, str]:
    """Category id -> name."""
    by_id: dict[int, str] = {}
    for k, category in enumerate(categories):
        category_id = _field(category, f"categories[{k}]", "id", int, path)
        name = _field(category, f"categories[{k}]", "name", str, path).strip()
        if category_id in by_id:
            raise DataError(f"malformed COCO JSON: category id {category_id} is listed twice", path=path)
        by_id[category_id] = name
    return by_id


def _labels(
    by_id: dict[int, str], classes: Sequence[str] | None, path: Path
) -> tuple[tuple[str, ...], tuple[int, ...], dict[int, int]]:
    """(object class names, their category ids, category id -> label) for the labels 1..C-1."""
    if classes is None:
        ids = sorted(by_id)
        names = tuple(by_id[i] for i in ids)
        if not names:
            raise DataError("no categories: cannot derive the class list", path=path)
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise DataError(f"category name {twice!r} is used by two category ids", path=path)
        if BACKGROUND in names:
            raise DataError(f"the category name {BACKGROUND!r} is reserved for label 0", path=path)
    else:
        names = normalise_classes(classes)
        id_of = {name: category_id for category_id, name in sorted(by_id.items(), reverse=True)}
        missing = [name for name in names if name not in id_of]
        if missing:
            raise DataError(
                f"class {missing[0]!r} is not among the categories ({', '.join(by_id.values())})", path=path
            )
        ids = [id_of[name] for name in names]
    return names, tuple(ids), {category_id: label for label, category_id in enumerate(ids, start=1)}


def load_coco(
    annotations_json: str | Path,
    images_dir: str | Path,
    classes: Sequence[str] | None = None,
    split: str | None = None,
    check_images: bool = True,
) -> DatasetIndex:
    """Index a COCO instances file.

    Args:
        annotations_json: the instances JSON (``images``, ``annotations``, ``categories``).
        images_dir: the folder that the images' ``file_name`` entries are relative to.
        classes: class names in label order (a leading ``"background"`` is allowed). Default: every category,
            by increasing category id. With ``classes``, an object of another category is an error.
        split: the name recorded in the index (default: from the file name ``instances_<split>.json``).
        check_images: check that every image file exists and starts with an image header.

    Raises:
        DataError: naming the file, for a missing or malformed JSON, a missing or corrupt image, an unknown
            category or image id, a box with negative size, an unknown class, or no images.
    """
    path = Path(annotations_json)
    images_dir = Path(images_dir)
    data = _read_json(path)
    images = _list(data, "images", path)
    by_id = _categories(_list(data, "categories", path), path)
    names, ids, label_of = _labels(by_id, classes, path)
    if not images:
        raise DataError("the data set is empty: no images", path=path)
    if not images_dir.is_dir():
        raise DataError("image folder not found", path=images_dir)
    counter = WarningCounter()
    order: dict[int, int] = {}  # COCO image id -> position in `images`
    for k, image in enumerate(images):
        image_id = _field(image, f"images[{k}]", "id", int, path)
        if image_id in order:
            counter.duplicates.append(str(path))
        else:
            order[image_id] = k
    objects: dict[int, list[tuple[list[float], int, bool, bool]]] = {image_id: [] for image_id in order}
    for k, annotation in enumerate(_list(data, "annotations", path, required=False)):
        where = f"annotations[{k}]"
        image_id = _field(annotation, where, "image_id", int, path)
        category_id = _field(annotation, where, "category_id", int, path)
        bbox = annotation.get("bbox")
        if not _is_box(bbox):
            raise DataError(f"malformed COCO JSON: {where} 'bbox' is not 4 finite numbers (got {bbox!r})", path=path)
        if image_id not in objects:
            raise DataError(f"{where} refers to image id {image_id}, which is not in 'images'", path=path)
        if category_id not in by_id:
            known = ", ".join(map(str, sorted(by_id)))
            raise DataError(f"{where}: unknown category id {category_id} (categories: {known})", path=path)
        if category_id not in label_of:
            name = by_id[category_id]
            raise DataError(f"{where}: unknown class {name!r}{unknown_class_hint(name, names)}", path=path)
        x, y, w, h = (float(v) for v in bbox)
        if w < 0 or h < 0:
            raise DataError(f"{where}: box with negative width or height {bbox}", path=path)
        crowd = bool(annotation.get("iscrowd", 0))
        objects[image_id].append(([x, y, x + w, y + h], label_of[category_id], crowd, w == 0 or h == 0))
    records = []
    for image_id, k in order.items():
        image = images[k]
        file_name = _field(image, f"images[{k}]", "file_name", str, path)
        image_path = images_dir / file_name
        if check_images:
            check_image_file(image_path)
        width, height = image.get("width"), image.get("height")
        if _is_size(width) and _is_size(height):
            width, height = int(width), int(height)
        else:
            width, height = image_size_from_header(image_path)
        found = objects[image_id]
        records.append(
            make_record(
                image_id=len(records),
                source_id=image_id,
                path=image_path,
                width=width,
                height=height,
                boxes=[o[0] for o in found],
                labels=[o[1] for o in found],
                ignore=[o[2] for o in found],
                source=file_name,
                counter=counter,
                degenerate=[o[3] for o in found],
            )
        )
    return DatasetIndex(
        root=path.parent.parent if path.parent.name == "annotations" else path.parent,
        format="coco",
        split=split if split is not None else split_of(path),
        class_names=(BACKGROUND, *names),
        category_ids=(0, *ids),
        records=tuple(records),
        warnings=counter.freeze(),
        annotations_file=path,
    )

