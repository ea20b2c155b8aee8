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

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from ssdcli.errors import DataError

from ..files import read_json
from ..records import (
    BACKGROUND,
    DatasetIndex,
    ImageRecord,
    WarningCounter,
    check_image_file,
    image_size_from_header,
    make_record,
    normalise_classes,
    unknown_class_hint,
)
from .entry import FormatEntry, OutputNames, copy_image
from .writers import coco_annotations, coco_categories, coco_image, coco_instances

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


def _read_json(path: Path, what: str) -> dict[str, Any]:
    data = read_json(path, what)
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


def _is_size(value: Any) -> TypeGuard[float]:
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


@dataclass(frozen=True)
class CocoObject:
    """One annotation of an instances file, checked: its image and category exist, ``xyxy`` pixel box
    (x2 = x + w) with finite values and no negative size. ``degenerate``: w or h is 0 as written."""

    where: str  # "annotations[k]", for messages
    image_id: int
    category_id: int
    xyxy: tuple[float, float, float, float]
    crowd: bool
    degenerate: bool


@dataclass(frozen=True)
class CocoInstances:
    """A COCO instances file, read and checked once: ``images`` (the raw entries, each with an integer ``id``),
    ``categories`` (category id -> name), every annotation as a :class:`CocoObject`, and ``data``, the file's
    JSON as read (what pycocotools evaluates against). What ``ssd train``, ``ssd data``, ``ssd encode`` and
    ``ssd eval --coco`` read from an instances file."""

    path: Path
    images: tuple[dict[str, Any], ...]
    categories: dict[int, str]
    objects: tuple[CocoObject, ...]
    data: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def image_entry(self, image_id: int) -> dict[str, Any]:
        """The ``images`` entry with this id; DataError naming the file if there is none."""
        for entry in self.images:
            if entry["id"] == image_id:
                return entry
        raise DataError(f"image id {image_id} is not in the file's 'images'", path=self.path)

    def objects_of(self, image_id: int) -> tuple[CocoObject, ...]:
        return tuple(obj for obj in self.objects if obj.image_id == image_id)

    def evaluation_problem(self) -> str | None:
        """Why the evaluator (pycocotools, which indexes images and annotations by id) cannot score against this
        file: an image id listed twice, an annotation without an ``id`` or with one used twice; None if it can."""
        annotations = self.data.get("annotations") or []
        for k, annotation in enumerate(annotations):
            if "id" not in annotation:
                return f"annotations[{k}] has no 'id'"
        for key, entries in (("images", self.images), ("annotations", annotations)):
            seen: set[Any] = set()
            for entry in entries:
                if entry["id"] in seen:
                    return f"{key} id {entry['id']!r} appears more than once"
                seen.add(entry["id"])
        return None


def _checked_box(
    annotation: Any, where: str, image_ids: set[int], categories: dict[int, str], path: Path
) -> tuple[int, int, list[float], bool]:
    """(image id, category id, [x, y, w, h], crowd) of one annotation, checked."""
    image_id = _field(annotation, where, "image_id", int, path)
    category_id = _field(annotation, where, "category_id", int, path)
    bbox = annotation.get("bbox")
    if not _is_box(bbox):
        raise DataError(f"malformed COCO JSON: {where} 'bbox' is not 4 finite numbers (got {bbox!r})", path=path)
    if image_id not in image_ids:
        raise DataError(f"{where} refers to image id {image_id}, which is not in 'images'", path=path)
    if category_id not in categories:
        known = ", ".join(map(str, sorted(categories)))
        raise DataError(f"{where}: unknown category id {category_id} (categories: {known})", path=path)
    if bbox[2] < 0 or bbox[3] < 0:
        raise DataError(f"{where}: box with negative width or height {bbox}", path=path)
    return image_id, category_id, [float(v) for v in bbox], bool(annotation.get("iscrowd", 0))


def read_instances(annotations_json: str | Path, what: str = "annotation file") -> CocoInstances:
    """Read and check a COCO instances file (see :class:`CocoInstances`); DataError naming the file and the
    entry for a missing or malformed file, no images, an annotation of an unknown image or category, or a bad
    box. ``what`` names the file in messages ("annotation file": "annotation file not found")."""
    path = Path(annotations_json)
    data = _read_json(path, what)
    images = _list(data, "images", path)
    for k, image in enumerate(images):
        _field(image, f"images[{k}]", "id", int, path)
    categories = _categories(_list(data, "categories", path), path)
    if not images:
        raise DataError("the data set is empty: no images", path=path)
    image_ids = {image["id"] for image in images}
    checked = [
        _checked_box(annotation, f"annotations[{k}]", image_ids, categories, path)
        for k, annotation in enumerate(_list(data, "annotations", path, required=False))
    ]
    xywh = np.array([box for _, _, box, _ in checked], dtype=np.float64).reshape(-1, 4)  # [N, 4]
    # torch: not at import, the format registry is read by `ssd --help`
    from ssdcli.core.boxes import xywh_to_xyxy

    xyxy = xywh_to_xyxy(xywh).tolist()  # [N, 4]
    objects = tuple(
        CocoObject(f"annotations[{k}]", image_id, category_id, tuple(corners), crowd, box[2] == 0 or box[3] == 0)
        for k, ((image_id, category_id, box, crowd), corners) in enumerate(zip(checked, xyxy))
    )
    return CocoInstances(path, tuple(images), categories, objects, data)


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
    instances = read_instances(path)
    names, ids, label_of = _labels(instances.categories, classes, path)
    if not images_dir.is_dir():
        raise DataError("image folder not found", path=images_dir)
    counter = WarningCounter()
    order: dict[int, int] = {}  # COCO image id -> position in `images`
    for k, image in enumerate(instances.images):
        if image["id"] in order:
            counter.duplicates.append(str(path))
        else:
            order[image["id"]] = k
    objects: dict[int, list[CocoObject]] = {image_id: [] for image_id in order}
    for obj in instances.objects:
        if obj.category_id not in label_of:
            name = instances.categories[obj.category_id]
            raise DataError(f"{obj.where}: unknown class {name!r}{unknown_class_hint(name, names)}", path=path)
        objects[obj.image_id].append(obj)
    records: list[ImageRecord] = []
    for image_id, k in order.items():
        image = instances.images[k]
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
                boxes=[o.xyxy for o in found],
                labels=[label_of[o.category_id] for o in found],
                ignore=[o.crowd for o in found],
                source=file_name,
                counter=counter,
                degenerate=[o.degenerate for o in found],
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
        unevaluable=instances.evaluation_problem(),
    )



def is_coco(path: Path) -> bool:
    """True for a ``.json`` file, or a folder with ``annotations/instances_<split>.json``."""
    return path.suffix.lower() == ".json" if path.is_file() else bool(coco_splits(path))


def _file_split(path: Path) -> str | None:
    return split_of(path) if path.suffix.lower() == ".json" else None


def _list_splits(path: Path) -> list[str]:
    return [split_of(path)] if path.is_file() else coco_splits(path)


def _load(path: Path, split: str, classes: Sequence[str] | None = None, check_images: bool = True) -> DatasetIndex:
    if _file_split(path) is not None:
        return load_coco(path, images_dir_for(path), classes=classes, check_images=check_images)
    annotations_json, images_dir = find_coco(path, split)
    return load_coco(annotations_json, images_dir, classes=classes, split=split, check_images=check_images)


def _image_ids(index: DatasetIndex, record: ImageRecord) -> int:
    return int(record.source_id) if index.format == "coco" else record.image_id + 1


def write_coco(root: Path, indexes: list[DatasetIndex], notes: list[str]) -> None:
    """Every split of ``indexes`` as a COCO data set in ``root``: ``annotations/instances_<split>.json`` and the
    images in ``<split>/``; a COCO source keeps its image and category ids, VOC's difficult flags become iscrowd."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    keep_ids = indexes[0].format == "coco"
    for index in indexes:
        folder = root / index.split
        folder.mkdir(exist_ok=True)
        names = OutputNames()
        category_ids = index.category_ids if keep_ids else tuple(range(len(index.class_names)))
        categories = [
            {"id": int(category_ids[k]), "name": name, "supercategory": "object"}
            for k, name in enumerate(index.class_names)
            if k > 0
        ] if keep_ids else coco_categories(index.class_names)
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for record in index.records:
            name = names(record.path)
            copy_image(record.path, folder / name)
            image_id = _image_ids(index, record)
            images.append(coco_image(image_id, name, record.width, record.height))
            cats = [category_ids[int(label)] for label in record.labels]
            annotations += coco_annotations(record.boxes, cats, record.ignore.tolist(), image_id, len(annotations) + 1)
        data = coco_instances(images, annotations, categories, f"converted by ssdcli from {index.root}")
        (root / "annotations" / f"instances_{index.split}.json").write_text(json.dumps(data))
    if indexes[0].format == "voc" and any(r.ignore.any() for i in indexes for r in i.records):
        notes.append(
            "VOC difficult objects written with iscrowd 1 (COCO has no difficult flag; both are ignored by evaluation)"
        )


COCO = FormatEntry(
    name="coco",
    paths="COCO root or instances .json file",
    folder_layout="annotations/instances_<split>.json (COCO)",
    splits_hint="annotations/instances_<split>.json",
    detect=is_coco,
    list_splits=_list_splits,
    load=_load,
    write=write_coco,
    file_kind="a COCO .json file",
    file_split=_file_split,
)
