"""Checking every image of a data set before training, so that no data problem surfaces in the middle of a run.

Indexing reads annotations only; :func:`check_images` decodes each image file once (in parallel threads: the
decoders release the GIL) with the one reader of :mod:`ssdcli.data.images`, and :func:`apply_image_checks`
turns what it found into a usable index, as docs/data.md's policy says:

- a missing image file is an error (:class:`DataError` naming it);
- a JPEG cut short is kept (decoded as far as its data goes) and counted;
- a file that does not decode at all is left out and counted, or is an error with ``strict=True``;
- an image whose pixels have another size than the annotation says takes the pixels' size (its boxes are
  clipped to it) and is counted;
- an image with an EXIF orientation tag other than "upright" is used as stored (boxes refer to the stored
  pixels) and counted, since a viewer shows it turned.

Results are cached in a JSON file keyed by the image's absolute path, byte size and modification time, so a
second run over the same files decodes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssdcli.errors import DataError

from .files import write_json
from .images import decode_image, exif_orientation
from .records import DatasetIndex, ImageRecord, WarningCounter, clip_boxes

OK = "ok"
TRUNCATED = "truncated"
UNDECODABLE = "undecodable"
_CACHE_VERSION = 2

#: Called with (images checked so far, images to check).
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class ImageCheck:
    """What decoding one image file found: ``status`` is :data:`OK`, :data:`TRUNCATED` or :data:`UNDECODABLE`;
    ``width`` and ``height`` are the decoded pixels' (0 when undecodable); ``reason`` says why it does not
    decode; ``orientation`` is the EXIF orientation tag (1: upright or none)."""

    status: str
    width: int = 0
    height: int = 0
    reason: str = ""
    orientation: int = 1


def check_image(path: Path) -> ImageCheck:
    """Decode ``path`` once; DataError only if the file is missing (a missing image is not a decoding problem)."""
    if not path.exists():
        raise DataError("image file not found", path=path)
    try:
        decoded = decode_image(path)
    except DataError as error:
        return ImageCheck(UNDECODABLE, reason=error.message)
    status = TRUNCATED if decoded.truncated else OK
    return ImageCheck(status, decoded.width, decoded.height, orientation=exif_orientation(path))


def _stamp(path: Path) -> tuple[int, int] | None:
    """(byte size, modification time in ns) of a file, or None if it cannot be read."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return int(stat.st_size), int(stat.st_mtime_ns)


@dataclass
class ImageCheckCache:
    """What :func:`check_images` found, kept in a JSON file between runs.

    Entries are keyed by the image's absolute path and valid while its byte size and modification time are
    those recorded. Nothing is written until :meth:`save`, so a run that stops on an input error leaves no file.
    A damaged cache file is ignored and rebuilt.
    """

    file: Path
    entries: dict[str, list[Any]] = field(default_factory=dict)
    changed: bool = False

    @classmethod
    def load(cls, file: str | Path) -> ImageCheckCache:
        file = Path(file)
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return cls(file)
        if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION or not isinstance(data.get("images"), dict):
            return cls(file)
        return cls(file, dict(data["images"]))

    def get(self, path: Path, stamp: tuple[int, int] | None) -> ImageCheck | None:
        entry = self.entries.get(str(path))
        if stamp is None or not isinstance(entry, list) or len(entry) != 7 or tuple(entry[:2]) != stamp:
            return None
        status, width, height, reason, orientation = entry[2:]
        if status not in (OK, TRUNCATED, UNDECODABLE):
            return None
        return ImageCheck(str(status), int(width), int(height), str(reason), int(orientation))

    def put(self, path: Path, stamp: tuple[int, int] | None, check: ImageCheck) -> None:
        if stamp is not None:
            self.entries[str(path)] = [*stamp, check.status, check.width, check.height, check.reason, check.orientation]
            self.changed = True

    def save(self) -> None:
        """Write the file atomically if anything was added; a cache that cannot be written only costs time."""
        if not self.changed:
            return
        try:
            write_json(self.file, {"version": _CACHE_VERSION, "images": self.entries})
        except DataError:
            return
        self.changed = False


def check_images(
    paths: Sequence[Path],
    workers: int = 0,
    cache: ImageCheckCache | None = None,
    on_progress: ProgressCallback | None = None,
) -> dict[Path, ImageCheck]:
    """Decode every file of ``paths`` once (``workers`` threads, at least one) and say what each one holds.

    Files that ``cache`` knows unchanged are not decoded again; what is decoded is added to ``cache`` (the
    caller saves it). A missing file raises :class:`DataError`.
    """
    unique = list(dict.fromkeys(Path(p).resolve() for p in paths))
    stamps = {path: _stamp(path) for path in unique}
    results: dict[Path, ImageCheck] = {}
    for path in unique:
        hit = cache.get(path, stamps[path]) if cache is not None else None
        if hit is not None:
            results[path] = hit
    todo = [path for path in unique if path not in results]
    total, done = len(unique), len(results)
    if on_progress is not None:
        on_progress(done, total)
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for path, check in zip(todo, pool.map(check_image, todo)):
                results[path] = check
                if cache is not None:
                    cache.put(path, stamps[path], check)
                done += 1
                if on_progress is not None:
                    on_progress(done, total)
    return {Path(p): results[Path(p).resolve()] for p in paths}


def _resized(record: ImageRecord, width: int, height: int, counter: WarningCounter) -> ImageRecord:
    """``record`` with the decoded pixels' size; boxes beyond the new size are clipped (or dropped if empty)."""
    boxes = record.boxes.copy()
    keep = clip_boxes(boxes, width, height, str(record.path), counter)
    return dataclasses.replace(
        record, width=width, height=height, boxes=boxes[keep], labels=record.labels[keep], ignore=record.ignore[keep]
    )


def apply_image_checks(index: DatasetIndex, checks: Mapping[Path, ImageCheck], strict: bool = False) -> DatasetIndex:
    """The index with the policy of the module docstring applied; its warnings count what was done.

    Records left out are renumbered so that ``image_id`` stays 0..N-1. Raises :class:`DataError` for an
    undecodable image when ``strict``, and when no image of the split is left.
    """
    counter = WarningCounter()
    truncated: list[str] = []
    undecodable: list[str] = []
    resized: list[str] = []
    rotated: list[str] = []
    records: list[ImageRecord] = []
    for record in index.records:
        check = checks[record.path]
        if check.status == UNDECODABLE:
            if strict:
                raise DataError(check.reason, path=record.path)
            undecodable.append(str(record.path))
            continue
        if check.status == TRUNCATED:
            truncated.append(str(record.path))
        if check.orientation != 1:
            rotated.append(str(record.path))
        if (check.width, check.height) != (record.width, record.height):
            resized.append(str(record.path))
            record = _resized(record, check.width, check.height, counter)
        records.append(dataclasses.replace(record, image_id=len(records)))
    if not records:
        raise DataError(f"no image of the {index.split!r} split decodes", path=index.root)
    repairs = counter.freeze()
    warnings = dataclasses.replace(
        index.warnings,
        clipped_boxes=index.warnings.clipped_boxes + repairs.clipped_boxes,
        zero_area_boxes=index.warnings.zero_area_boxes + repairs.zero_area_boxes,
        clipped_files=tuple(dict.fromkeys(index.warnings.clipped_files + repairs.clipped_files)),
        zero_area_files=tuple(dict.fromkeys(index.warnings.zero_area_files + repairs.zero_area_files)),
        truncated_images=tuple(truncated),
        undecodable_images=tuple(undecodable),
        resized_images=tuple(resized),
        rotated_images=tuple(rotated),
    )
    return dataclasses.replace(index, records=tuple(records), warnings=warnings)


def verify_index(
    index: DatasetIndex,
    workers: int = 0,
    cache: ImageCheckCache | None = None,
    strict: bool = False,
    on_progress: ProgressCallback | None = None,
) -> DatasetIndex:
    """:func:`check_images` on every image of ``index``, then :func:`apply_image_checks`."""
    checks = check_images([record.path for record in index.records], workers, cache, on_progress)
    return apply_image_checks(index, checks, strict)
