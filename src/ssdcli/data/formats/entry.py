"""What a data format is to the rest of ssdcli: one :class:`FormatEntry` (how it is recognised, where its splits
are listed, how a split is read and how a converted data set is written), and what the writers share."""

from __future__ import annotations

import filecmp
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..records import DatasetIndex, ImageRecord


class SplitLoader(Protocol):
    def __call__(
        self, path: Path, split: str, classes: Sequence[str] | None = None, check_images: bool = True
    ) -> DatasetIndex:
        """One split of the data set at ``path``, as a :class:`DatasetIndex`."""
        ...


class DatasetWriter(Protocol):
    def __call__(self, root: Path, indexes: list[DatasetIndex], notes: list[str]) -> None:
        """Every split of ``indexes`` written as a data set of this format into the new folder ``root``; what the
        format cannot hold is appended to ``notes`` (one line each)."""
        ...


def _no_file_split(path: Path) -> str | None:
    return None


def _image_name(index: DatasetIndex, record: ImageRecord) -> str:
    return record.path.name


@dataclass(frozen=True)
class FormatEntry:
    """One data format, as the registry (:data:`ssdcli.data.formats.FORMATS`) lists it.

    name: what ``--format`` and ``--to`` call it (lower case).
    paths: what a user gives as a data set of this format, as help texts list it (``"VOC root"``).
    folder_layout: what a folder of this format holds, as an error listing the formats says it
        (``"Annotations/ and ImageSets/ (VOC)"``).
    splits_hint: where its splits are listed, for a data set without any (``"ImageSets/Main/<split>.txt"``).
    detect: True if ``path`` (a folder or a file) is a data set of this format.
    list_splits: the split names of the data set at ``path`` (empty if none).
    load: one split as a :class:`DatasetIndex` (see :class:`SplitLoader`).
    write: a converted data set (see :class:`DatasetWriter`).
    file_kind: the one file that is a data set of this format, as an error names it (``"a COCO .json file"``);
        None when only folders are.
    file_split: the split a file given as the data set holds when it holds one only (a COCO instances file),
        else None.
    annotation_file: the file that annotates ``record`` of ``index``, as a check names it.
    keeps_class_order: False where the files store no class order (VOC's classes read sorted).
    """

    name: str
    paths: str
    folder_layout: str
    splits_hint: str
    detect: Callable[[Path], bool]
    list_splits: Callable[[Path], list[str]]
    load: SplitLoader
    write: DatasetWriter
    file_kind: str | None = None
    file_split: Callable[[Path], str | None] = _no_file_split
    annotation_file: Callable[[DatasetIndex, ImageRecord], str] = _image_name
    keeps_class_order: bool = True


class OutputNames:
    """File names in a written data set: one per source image, the source's name unless a different image took
    it (the same bytes under the same name, as the copies of one image in two splits of a YOLO or COCO set,
    share it)."""

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


def copy_image(source: Path, target: Path) -> None:
    """``source`` copied byte for byte to ``target``, unless an earlier split already wrote it there."""
    if not target.exists():
        shutil.copyfile(source, target)
