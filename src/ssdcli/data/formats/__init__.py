"""The data formats ssdcli reads and writes, one :class:`FormatEntry` per module (``voc``, ``coco``, ``yolo``), and
the registry every command reads them from: :data:`FORMATS`, in detection order.

A new format is one module here whose entry is added to :data:`FORMATS` (and its name to
``ssdcli.config.DATA_FORMATS``, which the configuration checks without importing data/). Opening a split
(:func:`ssdcli.data.dataset.open_index`), ``ssd data check``, ``ssd data convert`` and the CLI's choices of
``--format`` and ``--to`` read the registry. Importing it does not import torch (``ssd --help`` reads it).
"""

from __future__ import annotations

from pathlib import Path

from ssdcli.errors import DataError, UsageError

from .coco import COCO
from .entry import DatasetWriter, FormatEntry, SplitLoader
from .voc import VOC
from .yolo import YOLO

__all__ = [
    "FORMATS",
    "DatasetWriter",
    "FormatEntry",
    "SplitLoader",
    "detect_format",
    "format_names",
    "get_format",
    "paths_help",
    "resolve_format",
]

#: Every data format, in the order :func:`detect_format` tries them.
FORMATS: tuple[FormatEntry, ...] = (VOC, COCO, YOLO)


def format_names() -> tuple[str, ...]:
    """The names of :data:`FORMATS`, in order."""
    return tuple(entry.name for entry in FORMATS)


def paths_help() -> str:
    """What a data set path may be, for help texts: ``"VOC root, COCO root or instances .json file, ..."``."""
    return ", ".join(entry.paths for entry in FORMATS)


def get_format(name: str) -> FormatEntry:
    """The entry called ``name``; :class:`UsageError` naming the choices for another name."""
    for entry in FORMATS:
        if entry.name == name:
            return entry
    raise UsageError(f"unknown data set format {name!r} (choose from {', '.join(('auto', *format_names()))})")


def _either(items: list[str], last: str) -> str:
    """``"a, b{last}c"``: the items listed, ``last`` before the last one."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + last + items[-1]


def detect_format(path: str | Path) -> FormatEntry:
    """The first entry of :data:`FORMATS` that recognises ``path`` (a folder or a file); :class:`DataError`
    naming the path, and what each format would have, when none does."""
    path = Path(path)
    if not path.exists():
        raise DataError("data set not found", path=path)
    found = next((entry for entry in FORMATS if entry.detect(path)), None)
    if found is not None:
        return found
    if path.is_file():
        kinds = ["a folder", *(entry.file_kind for entry in FORMATS if entry.file_kind is not None)]
        raise DataError(f"cannot tell the data set format: expected {_either(kinds, ' or ')}", path=path)
    layouts = [entry.folder_layout for entry in FORMATS]
    raise DataError(f"cannot tell the data set format: expected {_either(layouts, ', or ')}", path=path)



def resolve_format(path: str | Path, name: str) -> FormatEntry:
    """The entry called ``name``, or for ``"auto"`` the one that recognises ``path`` (:func:`detect_format`)."""
    return detect_format(path) if name == "auto" else get_format(name)
