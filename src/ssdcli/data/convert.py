"""``ssd data convert``: a data set from one of VOC, COCO and YOLO into another, every split at once.

The source is read with the project's readers (:func:`open_index`), so the converted data set holds what training
would see: boxes clipped to the image and zero-area boxes dropped (the source's warnings are passed on). Image
files are copied byte for byte; the source is only ever read. Flags that the target format cannot hold are
said, not silently lost: VOC ``difficult`` and COCO ``iscrowd`` map onto each other (both mean "ignored by
evaluation"), YOLO has neither, so such objects are left out there (as Ultralytics' own VOC conversion does).
The class order is the source's (:func:`source_classes`), so a model trained on the source reads the copy's class
ids as its own; VOC stores no order (its classes read sorted), which a note says where that changes the order.
"""

from __future__ import annotations

import filecmp
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssdcli.errors import DataError, UsageError

from .coco import coco_splits, split_of
from .dataset import FORMATS, detect_format, open_index
from .records import DatasetIndex, ImageRecord
from .staging import write_folder
from .voc import voc_splits
from .writers import (
    coco_annotations,
    coco_categories,
    coco_image,
    coco_instances,
    record_voc_xml,
    yolo_data_yaml,
    yolo_lines,
)
from .yolo import yolo_splits

TARGETS = ("voc", "coco", "yolo")


@dataclass(frozen=True)
class ConvertResult:
    out: Path
    format: str
    images_per_split: dict[str, int]
    objects: int
    notes: tuple[str, ...]


def _splits(src: Path, format: str) -> list[str]:
    if format == "voc":
        return voc_splits(src)
    if format == "yolo":
        return yolo_splits(src)
    return [split_of(src)] if src.is_file() else coco_splits(src)


def source_classes(indexes: list[DatasetIndex]) -> list[str]:
    """The class list of the whole source in its format's own order, the one a model trained on it has: VOC's
    sorted names (of every split: a split without squares does not move them), COCO's categories by id, YOLO's
    ``names`` (the same in every split)."""
    found: dict[str, int] = {}
    for index in indexes:
        for label, name in enumerate(index.class_names[1:], start=1):
            found.setdefault(name, index.category_ids[label] if index.format == "coco" else len(found))
    if indexes[0].format == "voc":
        return sorted(found)
    return sorted(found, key=found.__getitem__)


def _read_splits(src: Path, format: str) -> list[DatasetIndex]:
    """Every split, all with the same class list (:func:`source_classes`)."""
    names = _splits(src, format)
    if not names:
        raise DataError("no splits found to convert", path=src)
    first = [open_index(src, name, format) for name in names]
    classes = source_classes(first)
    return [
        index if list(index.class_names[1:]) == classes else open_index(src, index.split, format, classes)
        for index in first
    ]


def _check_out(src: Path, out: Path, force: bool) -> None:
    source, target = src.resolve(), out.resolve()
    source_root = source.parent if source.is_file() else source
    if target == source_root or target.is_relative_to(source_root) or source_root.is_relative_to(target):
        raise UsageError("the output must be outside the source data set (the source is never written)", path=out)
    if out.exists() and not out.is_dir():
        raise UsageError("output exists and is not a folder", path=out)
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError("output folder is not empty; choose a new folder or pass `force`", path=out)


class _Names:
    """Output file names: one per source image, the source's name unless a different image took it (the same
    bytes under the same name, as the copies of one image in two splits of a YOLO or COCO set, share it)."""

    def __init__(self) -> None:
        self.by_source: dict[Path, str] = {}
        self.taken: dict[str, Path] = {}

    def __call__(self, path: Path) -> str:
        if path not in self.by_source:
            name, n = path.name, 1
            while name in self.taken and not filecmp.cmp(self.taken[name], path, shallow=False):
                name, n = f"{path.stem}_{n}{path.suffix}", n + 1
            self.by_source[path] = name
            self.taken.setdefault(name, path)
        return self.by_source[path]


def _copy(source: Path, target: Path) -> None:
    if not target.exists():
        shutil.copyfile(source, target)


def _write_voc(root: Path, indexes: list[DatasetIndex], notes: list[str]) -> None:
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    names = _Names()
    for index in indexes:
        ids = []
        for record in index.records:
            name = names(record.path)
            _copy(record.path, root / "JPEGImages" / name)
            stem = Path(name).stem
            (root / "Annotations" / f"{stem}.xml").write_bytes(record_voc_xml(record, name, index.class_names))
            ids.append(stem)
        (root / "ImageSets" / "Main" / f"{index.split}.txt").write_text("".join(f"{i}\n" for i in ids))
    if indexes[0].format == "coco" and any(r.ignore.any() for i in indexes for r in i.records):
        notes.append("COCO iscrowd objects written as VOC difficult objects (both are ignored by evaluation)")
    classes = list(indexes[0].class_names[1:])
    if classes != sorted(classes):
        notes.append(
            f"VOC keeps no class order: the copy's classes read sorted ({', '.join(sorted(classes))}), not in the "
            f"source's order ({', '.join(classes)}); a model trained on the source numbers its classes differently"
        )


def _coco_ids(index: DatasetIndex, record: ImageRecord) -> int:
    return int(record.source_id) if index.format == "coco" else record.image_id + 1


def _write_coco(root: Path, indexes: list[DatasetIndex], notes: list[str]) -> None:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    keep_ids = indexes[0].format == "coco"
    for index in indexes:
        folder = root / index.split
        folder.mkdir(exist_ok=True)
        names = _Names()
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
            _copy(record.path, folder / name)
            image_id = _coco_ids(index, record)
            images.append(coco_image(image_id, name, record.width, record.height))
            cats = [category_ids[int(label)] for label in record.labels]
            annotations += coco_annotations(record.boxes, cats, record.ignore.tolist(), image_id, len(annotations) + 1)
        data = coco_instances(images, annotations, categories, f"converted by ssdcli from {index.root}")
        (root / "annotations" / f"instances_{index.split}.json").write_text(json.dumps(data))
    if indexes[0].format == "voc" and any(r.ignore.any() for i in indexes for r in i.records):
        notes.append("VOC difficult objects written with iscrowd 1 (COCO has no difficult flag; both are ignored by evaluation)")


def _write_yolo(root: Path, indexes: list[DatasetIndex], notes: list[str]) -> None:
    left_out = 0
    for index in indexes:
        images, labels = root / "images" / index.split, root / "labels" / index.split
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        names = _Names()
        for record in index.records:
            name = names(record.path)
            _copy(record.path, images / name)
            kept = ~record.ignore
            left_out += int((~kept).sum())
            text = yolo_lines(record.boxes[kept], (record.labels[kept] - 1).tolist(), record.width, record.height)
            (labels / f"{Path(name).stem}.txt").write_text(text)
    splits = {index.split: f"images/{index.split}" for index in indexes}
    (root / "data.yaml").write_text(yolo_data_yaml(splits, indexes[0].class_names[1:]))
    if left_out:
        notes.append(f"{left_out} difficult or crowd objects left out: YOLO labels cannot mark an object as ignored")


_WRITERS = {"voc": _write_voc, "coco": _write_coco, "yolo": _write_yolo}


def convert_dataset(src: str | Path, to: str, out: str | Path, force: bool = False, source_format: str = "auto") -> ConvertResult:
    """Convert every split of ``src`` into a new ``to``-format data set in ``out`` (see the module docstring).

    ``out`` must be outside ``src`` and new or empty (or ``force``). A new ``out`` is written into a hidden
    sibling folder first and renamed when complete, so a failure leaves nothing behind.
    """
    if to not in TARGETS:
        raise UsageError(f"unknown target format {to!r} (choose from {', '.join(TARGETS)})")
    if source_format not in FORMATS:
        raise UsageError(f"unknown data set format {source_format!r} (choose from {', '.join(FORMATS)})")
    src, out = Path(src), Path(out)
    format = detect_format(src) if source_format == "auto" else source_format
    _check_out(src, out, force)
    indexes = _read_splits(src, format)
    notes = [f"{index.split}: {index.warnings.summary()}" for index in indexes if index.warnings.summary()]
    write_folder(out, lambda folder: _WRITERS[to](folder, indexes, notes))
    return ConvertResult(
        out=out,
        format=to,
        images_per_split={index.split: len(index) for index in indexes},
        objects=sum(index.num_objects for index in indexes),
        notes=tuple(notes),
    )
