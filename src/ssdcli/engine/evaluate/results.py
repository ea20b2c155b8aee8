"""Results files of a VOC split read as :class:`Detections`: a folder of devkit files ``comp4_det_<split>_<class>.txt``
or a COCO-style results JSON. Every problem raises :class:`DataError` naming the file and what is wrong."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssdcli.core.boxes import xywh_to_xyxy
from ssdcli.core.detections import Detections
from ssdcli.data.files import read_json
from ssdcli.data.results_io import check_coco_results, read_devkit_detections
from ssdcli.errors import DataError


def read_voc_results(
    results: Path, image_ids: Sequence[str], class_names: Sequence[str], split: str
) -> tuple[list[Detections], tuple[str, ...]]:
    """The detections of ``results`` (a devkit folder or a results JSON) for the images ``image_ids`` of ``split``,
    in file order (see :meth:`Detections.from_rows`), labels 1..len(class_names); and warnings: classes without a
    devkit file count as having no detections."""
    if results.is_dir():
        rows, missing = read_devkit_detections(results, class_names, split, image_ids)
        warnings = (f"{results}: no detection file for class(es) {', '.join(missing)}; counted as no detections",)
        return Detections.from_devkit(rows, class_names), warnings if missing else ()
    if results.exists():
        return _from_coco_results(read_json(results, "results file"), image_ids, class_names, split, results), ()
    raise DataError("results file or folder not found", path=results)


def _from_coco_results(
    results: Any, image_ids: Sequence[str], class_names: Sequence[str], split: str, path: Path
) -> list[Detections]:
    """COCO-style results for a VOC split, in their order.

    ``image_id``: a string is a VOC image id of the split; an integer is a 0-based index into the split list
    (the line of ``ImageSets/Main/<split>.txt``). ``category_id``: the 1-based index into ``class_names``, the
    label. ``bbox`` [x, y, w, h] in 0-based continuous pixels.
    """
    records: list[Mapping[str, Any]] = check_coco_results(results, path)
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
