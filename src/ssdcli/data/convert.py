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

from dataclasses import dataclass
from pathlib import Path

from ssdcli.errors import DataError, UsageError

from . import formats
from .dataset import open_index
from .formats import FormatEntry
from .records import DatasetIndex
from .staging import write_folder


@dataclass(frozen=True)
class ConvertResult:
    out: Path
    format: str
    images_per_split: dict[str, int]
    objects: int
    notes: tuple[str, ...]


def source_classes(indexes: list[DatasetIndex], keeps_order: bool = True) -> list[str]:
    """The class list of the whole source in its format's own order, the one a model trained on it has: sorted
    names where the format keeps no order (VOC; of every split: a split without squares does not move them),
    else by category id (COCO's categories, YOLO's ``names``, the same in every split)."""
    found: dict[str, int] = {}
    for index in indexes:
        for label, name in enumerate(index.class_names[1:], start=1):
            found.setdefault(name, index.category_ids[label])
    if not keeps_order:
        return sorted(found)
    return sorted(found, key=found.__getitem__)


def _read_splits(src: Path, format: FormatEntry) -> list[DatasetIndex]:
    """Every split, all with the same class list (:func:`source_classes`)."""
    names = format.list_splits(src)
    if not names:
        raise DataError("no splits found to convert", path=src)
    first = [open_index(src, name, format.name) for name in names]
    classes = source_classes(first, format.keeps_class_order)
    return [
        index if list(index.class_names[1:]) == classes else open_index(src, index.split, format.name, classes)
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


def convert_dataset(src: str | Path, to: str, out: str | Path, force: bool = False, source_format: str = "auto") -> ConvertResult:
    """Convert every split of ``src`` into a new ``to``-format data set in ``out`` (see the module docstring).

    ``out`` must be outside ``src`` and new or empty (or ``force``). A new ``out`` is written into a hidden
    sibling folder first and renamed when complete, so a failure leaves nothing behind.
    """
    if to not in formats.format_names():
        raise UsageError(f"unknown target format {to!r} (choose from {', '.join(formats.format_names())})")
    target = formats.get_format(to)
    src, out = Path(src), Path(out)
    format = formats.resolve_format(src, source_format)
    _check_out(src, out, force)
    indexes = _read_splits(src, format)
    notes = [f"{index.split}: {index.warnings.summary()}" for index in indexes if index.warnings.summary()]
    write_folder(out, lambda folder: target.write(folder, indexes, notes))
    return ConvertResult(
        out=out,
        format=to,
        images_per_split={index.split: len(index) for index in indexes},
        objects=sum(index.num_objects for index in indexes),
        notes=tuple(notes),
    )
