"""Results files of a VOC split read as :class:`Detections`: a folder of devkit files ``comp4_det_<split>_<class>.txt``
or a COCO-style results JSON. Every problem raises :class:`DataError` naming the file and what is wrong.

Class ids keep their meaning between commands: the results' classes are matched to the data set's by name where
the results carry their class list (devkit files are named by class; ssdcli's results JSON has ``categories``),
and a plain results list's ``category_id`` is the 1-based index into the evaluated classes, which a split that
lacks a class does not change (:func:`evaluated_classes`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssdcli.core.boxes import xywh_to_xyxy
from ssdcli.core.detections import Detections
from ssdcli.data.formats.voc import voc_dataset_classes
from ssdcli.data.results_io import ResultsFile, devkit_classes, read_devkit_detections, read_results_file
from ssdcli.errors import DataError


@dataclass(frozen=True)
class VocResults:
    """A results folder or file, read before it is matched to a split: ``carried``, the class names it carries
    (a devkit folder's files; the classes that the records of a results JSON with ``categories`` use), None for a
    plain results list; ``coco``, the results JSON (None for a devkit folder)."""

    path: Path
    carried: tuple[str, ...] | None
    coco: ResultsFile | None = None


@dataclass(frozen=True)
class EvaluatedClasses:
    """The classes evaluated, in the order a plain results list's 1-based ``category_id`` refers to, and what they
    are for messages (given as ``classes``, or the data set's)."""

    names: tuple[str, ...]
    given: bool

    def described(self) -> str:
        listed = ", ".join(self.names)
        if self.given:
            return f"one of the evaluated classes (`classes`: {listed})"
        return f"a class of the data set ({listed})"


def open_voc_results(path: Path, split: str) -> VocResults:
    """The results at ``path``: a folder of devkit files of ``split``, or a results JSON (checked)."""
    if path.is_dir():
        return VocResults(path, devkit_classes(path, split))
    if path.exists():
        coco = read_results_file(path)
        return VocResults(path, coco.used_names() if coco.categories is not None else None, coco)
    raise DataError("results file or folder not found", path=path)


def evaluated_classes(
    results: VocResults, root: Path, present: Sequence[str], given: Sequence[str] | None
) -> EvaluatedClasses:
    """``given`` (the user's ``classes``); else the classes of the split's objects (``present``, sorted) where
    they hold every class the results carry; else the data set's, the sorted names of every split's objects (a
    plain results list's ids index them, so a split without squares does not turn the squares into the next
    class)."""
    if given:
        return EvaluatedClasses(tuple(given), True)
    if results.carried is not None and present and set(results.carried) <= set(present):
        return EvaluatedClasses(tuple(present), False)
    names = voc_dataset_classes(root)
    if not names:
        raise DataError("the data set has no objects and no classes were given", path=root)
    return EvaluatedClasses(names, False)


def read_voc_results(
    results: VocResults, image_ids: Sequence[str], classes: EvaluatedClasses, split: str
) -> tuple[list[Detections], tuple[str, ...]]:
    """The detections of ``results`` for the images ``image_ids`` of ``split``, in file order (see
    :meth:`Detections.from_rows`), labels 1..len(classes.names); and warnings: classes without a devkit file
    count as having no detections. A class of the results that is not one of ``classes`` is a DataError."""
    names = classes.names
    if results.coco is None:
        rows, missing = read_devkit_detections(results.path, names, split, image_ids, classes.described())
        warnings = (f"{results.path}: no detection file for class(es) {', '.join(missing)}; counted as no detections",)
        return Detections.from_devkit(rows, names), warnings if missing else ()
    records = results.coco.records
    if results.coco.categories is not None:
        label_of = {name: [label] for label, name in enumerate(names, start=1)}
        records = results.coco.by_name(label_of, classes.described(), results.path)
    return _from_coco_results(records, image_ids, names, split, results.path), ()


def _from_coco_results(
    records: Sequence[Mapping[str, Any]], image_ids: Sequence[str], class_names: Sequence[str], split: str, path: Path
) -> list[Detections]:
    """COCO-style results for a VOC split, in their order.

    ``image_id``: a string is a VOC image id of the split; an integer is a 0-based index into the split list
    (the line of ``ImageSets/Main/<split>.txt``). ``category_id``: the 1-based index into ``class_names``, the
    label. ``bbox`` [x, y, w, h] in 0-based continuous pixels.
    """
    known = set(image_ids)
    ids = []
    for i, result in enumerate(records):
        image_id, category_id = result["image_id"], result["category_id"]
        if isinstance(image_id, int):
            if not 0 <= image_id < len(image_ids):
                raise DataError(
                    f"result {i}: image_id {image_id} is not an index into split {split!r} (0..{len(image_ids) - 1})",
                    path=path,
                )
            image_id = image_ids[image_id]
        elif image_id not in known:
            raise DataError(f"result {i}: image_id {image_id!r} is not in split {split!r}", path=path)
        if not 1 <= category_id <= len(class_names):
            raise DataError(
                f"result {i}: category_id {category_id} is not a class index 1..{len(class_names)} "
                f"({', '.join(class_names)})",
                path=path,
            )
        ids.append(image_id)
    return Detections.from_rows(
        ids,
        xywh_to_xyxy(np.array([r["bbox"] for r in records], dtype=np.float64).reshape(-1, 4)),
        np.array([r["score"] for r in records], dtype=np.float64),
        np.array([r["category_id"] for r in records], dtype=np.int64),
    )
