"""Detection results files: the COCO results JSON and the PASCAL VOC devkit's per-class text files.

COCO results JSON: a list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``; ``bbox`` in pixels,
0-based continuous (the box spans x .. x + w), as pycocotools reads it. ssdcli writes it as an object
``{"categories": [{"id", "name"}, ...], "results": [...]}``: the class list the category ids were written with,
so that a reader maps every id by its class name (:class:`ResultsFile`); a plain list from another tool is read
as it is, its ids taken in the reader's own class list.

VOC devkit files: one file per class, ``comp4_det_<split>_<class>.txt``, one detection per line
``image_id score x1 y1 x2 y2`` with the devkit's 1-based inclusive pixel indices (x1 = xmin, x2 = xmax as in
the annotation XML). In ssdcli's 0-based continuous ``xyxy`` that is (x1 - 1, y1 - 1, x2, y2); the files hold
:class:`~ssdcli.core.detections.DevkitRow` as they are (``Detections.to_devkit`` and ``Detections.from_devkit``
convert).

Every problem with a file raises :class:`DataError` naming the file and what is wrong, on one line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssdcli.core.detections import DevkitRow
from ssdcli.data.files import read_json, write_atomic
from ssdcli.errors import DataError

COCO_RESULT_KEYS: tuple[str, ...] = ("image_id", "category_id", "bbox", "score")
DEVKIT_COMPETITION = "comp4"  # the devkit's id for "trained on any data"


def _describe(value: Any) -> str:
    return {dict: "a JSON object", list: "a JSON list", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def check_coco_results(data: Any, path: str | Path | None = None) -> list[dict[str, Any]]:
    """Check that ``data`` is a list of ``{image_id, category_id, bbox [x, y, w, h], score}`` and return it.

    ``image_id`` an integer or a string, ``category_id`` an integer, ``bbox`` 4 finite numbers with w, h >= 0,
    ``score`` a finite number. Other keys are allowed and ignored. The report of ``ssd predict --json`` (an object
    whose ``results`` is that list) gives its ``results``.
    """
    if isinstance(data, dict) and "results" in data and "annotations" not in data:
        data = data["results"]
    if not isinstance(data, list):
        hint = " (this looks like a ground-truth file)" if isinstance(data, dict) and "annotations" in data else ""
        raise DataError(
            "results must be a JSON list of {image_id, category_id, bbox, score} objects, "
            f"got {_describe(data)}{hint}",
            path=path,
        )
    for i, item in enumerate(data):
        if type(item) is not dict:
            raise DataError(f"result {i}: expected a JSON object, got {_describe(item)}", path=path)
        missing = [key for key in COCO_RESULT_KEYS if key not in item]
        if missing:
            raise DataError(f"result {i}: missing key {missing[0]!r} (needs {', '.join(COCO_RESULT_KEYS)})", path=path)
        image_id, category_id, bbox, score = (item[key] for key in COCO_RESULT_KEYS)
        if type(image_id) not in (int, str):
            raise DataError(f"result {i}: image_id must be an integer or a string, got {image_id!r}", path=path)
        if type(category_id) is not int:
            raise DataError(f"result {i}: category_id must be an integer, got {category_id!r}", path=path)
        if (
            type(bbox) is not list
            or len(bbox) != 4
            or not all(type(v) in (int, float) and math.isfinite(v) for v in bbox)
        ):
            raise DataError(f"result {i}: bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}", path=path)
        if bbox[2] < 0 or bbox[3] < 0:
            raise DataError(f"result {i}: bbox has a negative width or height: {bbox!r}", path=path)
        if type(score) not in (int, float) or not math.isfinite(score):
            raise DataError(f"result {i}: score must be a finite number, got {score!r}", path=path)
    return data


@dataclass(frozen=True)
class ResultsFile:
    """A results JSON as read: ``records``, its checked COCO results, and ``categories`` (category id -> class
    name), the class list the file carries, or None for a plain list (ids then mean what the reader's class list
    says)."""

    records: list[dict[str, Any]]
    categories: dict[int, str] | None = None

    def used_names(self) -> tuple[str, ...]:
        """The class names of the records' category ids, in order of first use (``categories`` needed)."""
        assert self.categories is not None
        return tuple(dict.fromkeys(self.categories[record["category_id"]] for record in self.records))

    def by_name(self, ids_of: Mapping[str, Sequence[int]], known: str, path: str | Path) -> list[dict[str, Any]]:
        """The records with each category id replaced by its class name's id in the reader's class list
        (``ids_of``: name -> the ids it has there). A name with no id there, or with several, is a
        :class:`DataError` naming the first result of it; ``known`` says what the class list is ("a class of
        the data set (a, b)")."""
        assert self.categories is not None
        new_id: dict[int, int] = {}
        for i, record in enumerate(self.records):
            category_id = record["category_id"]
            if category_id in new_id:
                continue
            name = self.categories[category_id]
            ids = list(ids_of.get(name, ()))
            if len(ids) != 1:
                what = f"is not {known}" if not ids else f"is ambiguous: {known} has it under ids {ids}"
                raise DataError(f"result {i}: class {name!r} (category_id {category_id}) {what}", path=path)
            new_id[category_id] = ids[0]
        return [dict(record, category_id=new_id[record["category_id"]]) for record in self.records]


def _check_categories(data: Any, path: str | Path | None) -> dict[int, str]:
    """The ``categories`` a results file carries, ``[{"id": int, "name": str}, ...]``, as id -> name."""
    if type(data) is not list:
        raise DataError(f"categories must be a JSON list of {{id, name}} objects, got {_describe(data)}", path=path)
    categories: dict[int, str] = {}
    for k, item in enumerate(data):
        if type(item) is not dict or type(item.get("id")) is not int or type(item.get("name")) is not str:
            raise DataError(f"categories[{k}]: expected {{\"id\": integer, \"name\": string}}, got {item!r}", path=path)
        if item["id"] in categories:
            raise DataError(f"categories[{k}]: category id {item['id']} is listed twice", path=path)
        if not item["name"].strip():
            raise DataError(f"categories[{k}]: empty class name", path=path)
        categories[item["id"]] = item["name"]
    return categories


def check_results_file(data: Any, path: str | Path | None = None) -> ResultsFile:
    """A results file's JSON checked: its records (:func:`check_coco_results`) and, in an object with
    ``categories``, its class list, which every record's ``category_id`` must be in."""
    records = check_coco_results(data, path)
    if not (isinstance(data, dict) and "categories" in data and "annotations" not in data):
        return ResultsFile(records)
    categories = _check_categories(data["categories"], path)
    for i, record in enumerate(records):
        if record["category_id"] not in categories:
            listed = ", ".join(f"{c} {name}" for c, name in categories.items())
            raise DataError(
                f"result {i}: category_id {record['category_id']} is not in the file's categories ({listed})",
                path=path,
            )
    return ResultsFile(records, categories)


def read_results_file(path: str | Path) -> ResultsFile:
    """Read and check a results JSON file (see :func:`check_results_file`)."""
    return check_results_file(read_json(path, "results file"), path)


def results_document(results: Sequence[dict[str, Any]], categories: Mapping[int, str]) -> dict[str, Any]:
    """What ssdcli writes for COCO results: ``{"categories": [{"id", "name"}], "results": [...]}``, the class list
    (``categories``: category id -> class name) that the records' ids refer to, beside the records."""
    listed = [{"id": int(c), "name": name} for c, name in sorted(categories.items())]
    return {"categories": listed, "results": list(results)}


def write_coco_results(path: str | Path, results: Sequence[dict[str, Any]], categories: Mapping[int, str]) -> Path:
    """Write a results JSON file (:func:`results_document`)."""
    return write_atomic(path, json.dumps(results_document(results, categories)))


def devkit_file_name(class_name: str, split: str = "test", competition: str = DEVKIT_COMPETITION) -> str:
    """``comp4_det_<split>_<class>.txt``, the devkit's name for a class's detections on a split."""
    return f"{competition}_det_{split}_{class_name}.txt"


def write_devkit_detections(
    folder: str | Path,
    rows: Iterable[DevkitRow],
    class_names: Sequence[str],
    split: str = "test",
) -> list[Path]:
    """Write one devkit file per class (an empty file for a class without detections); returns the paths.

    Lines are ``image_id score x1 y1 x2 y2`` of the rows, in devkit coordinates; numbers are written with ``repr``
    so that they read back exactly.
    """
    folder = Path(folder)
    lines: dict[str, list[str]] = {name: [] for name in class_names}
    for row in rows:
        if any(ch.isspace() for ch in row.image_id) or not row.image_id:
            raise ValueError(f"image id {row.image_id!r} cannot be written to a devkit file (empty or has spaces)")
        numbers = (float(row.score), *(float(v) for v in row.xyxy_devkit))
        lines[row.class_name].append(" ".join([row.image_id, *(repr(v) for v in numbers)]))
    paths = []
    for name in class_names:
        path = folder / devkit_file_name(name, split)
        paths.append(write_atomic(path, "".join(line + "\n" for line in lines[name])))
    return paths


def _read_devkit_file(path: Path, class_name: str) -> list[tuple[int, DevkitRow]]:
    """The rows of one devkit file with their line numbers."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError("malformed detection file: not UTF-8 text", path=path) from None
    except OSError as error:
        raise DataError(f"cannot read detection file: {error.strerror}", path=path) from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 6:
                raise ValueError
            score, x1, y1, x2, y2 = (float(v) for v in parts[1:])
        except ValueError:
            raise DataError(
                f"line {number}: expected 'image_id score x1 y1 x2 y2', got {line.strip()!r}", path=path
            ) from None
        if not all(math.isfinite(v) for v in (score, x1, y1, x2, y2)):
            raise DataError(f"line {number}: score and box must be finite numbers, got {line.strip()!r}", path=path)
        rows.append((number, DevkitRow(parts[0], class_name, score, (x1, y1, x2, y2))))
    return rows


def _devkit_files(folder: str | Path, split: str) -> dict[str, Path]:
    """Class name -> its file ``comp4_det_<split>_<class>.txt`` in ``folder``; a missing folder, or one with no
    such file, is a :class:`DataError`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("results folder not found", path=folder)
    prefix, suffix = f"{DEVKIT_COMPETITION}_det_{split}_", ".txt"
    found = {p.name[len(prefix) : -len(suffix)]: p for p in folder.glob(f"{prefix}*{suffix}") if p.is_file()}
    if not found:
        raise DataError(
            f"no devkit detection files {devkit_file_name('<class>', split)} in the results folder", path=folder
        )
    return dict(sorted(found.items()))


def devkit_classes(folder: str | Path, split: str = "test") -> tuple[str, ...]:
    """The classes of the devkit files of ``folder`` for ``split`` (sorted), the class list a devkit folder
    carries in its file names; a missing folder, or one with no such file, is a :class:`DataError`."""
    return tuple(_devkit_files(folder, split))


def read_devkit_detections(
    folder: str | Path,
    class_names: Sequence[str],
    split: str = "test",
    image_ids: Collection[str] | None = None,
    known: str | None = None,
) -> tuple[list[DevkitRow], tuple[str, ...]]:
    """Read the devkit files ``comp4_det_<split>_<class>.txt`` of ``folder``.

    Returns the rows (file by file in the order of ``class_names``, lines in file order) and the classes that
    have no file (read as no detections). A folder with no such file at all, a file for a class not in
    ``class_names`` (``known`` says what they are; default "one of the evaluated classes (a, b)"), or (given
    ``image_ids``, the split's) a line of an image not in the split is a :class:`DataError` naming the file (and
    line).
    """
    found = _devkit_files(folder, split)
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        known = known or f"one of the evaluated classes ({', '.join(class_names)})"
        raise DataError(f"detections for class {unknown[0]!r}, which is not {known}", path=found[unknown[0]])
    read = {name: _read_devkit_file(found[name], name) for name in class_names if name in found}
    ids = None if image_ids is None else set(image_ids)
    for name, numbered in read.items():
        for number, row in numbered:
            if ids is not None and row.image_id not in ids:
                raise DataError(f"line {number}: image id {row.image_id!r} is not in split {split!r}", path=found[name])
    missing = tuple(name for name in class_names if name not in found)
    return [row for numbered in read.values() for _, row in numbered], missing
