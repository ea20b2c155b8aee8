"""A data format that exists only in the tests: one ``boxes.json`` ({split: [{image, width, height, objects:
[[class name, x1, y1, x2, y2], ...]}]}) beside the images. It shows that a format is one registry entry."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from ssdcli.data.formats import FormatEntry
from ssdcli.data.records import BACKGROUND, DatasetIndex, WarningCounter, make_record

FILE = "boxes.json"


def _read(path: Path) -> dict[str, list[dict[str, object]]]:
    return json.loads((path / FILE).read_text())


def _load(path: Path, split: str, classes: Sequence[str] | None = None, check_images: bool = True) -> DatasetIndex:
    entries = _read(path)[split]
    names = list(classes) if classes is not None else sorted({o[0] for e in entries for o in e["objects"]})  # type: ignore[attr-defined]
    counter = WarningCounter()
    records = tuple(
        make_record(
            image_id=k,
            source_id=str(entry["image"]),
            path=path / str(entry["image"]),
            width=int(entry["width"]),  # type: ignore[call-overload]
            height=int(entry["height"]),  # type: ignore[call-overload]
            boxes=[o[1:] for o in entry["objects"]],  # type: ignore[attr-defined]
            labels=[names.index(o[0]) + 1 for o in entry["objects"]],  # type: ignore[attr-defined]
            ignore=[False for _ in entry["objects"]],  # type: ignore[attr-defined]
            source=str(path / FILE),
            counter=counter,
        )
        for k, entry in enumerate(entries)
    )
    return DatasetIndex(path, "dummy", split, (BACKGROUND, *names), tuple(range(len(names) + 1)), records, counter.freeze())


def _write(root: Path, indexes: list[DatasetIndex], notes: list[str]) -> None:
    data = {}
    for index in indexes:
        data[index.split] = [
            {
                "image": record.path.name,
                "width": record.width,
                "height": record.height,
                "objects": [[index.class_names[int(label)], *map(float, box)] for box, label in zip(record.boxes, record.labels)],
            }
            for record in index.records
        ]
        for record in index.records:
            shutil.copyfile(record.path, root / record.path.name)
    (root / FILE).write_text(json.dumps(data))


DUMMY = FormatEntry(
    name="dummy",
    paths="DUMMY root",
    folder_layout="boxes.json (DUMMY)",
    splits_hint=f"the keys of {FILE}",
    detect=lambda path: (path / FILE).is_file(),
    list_splits=lambda path: sorted(_read(path)),
    load=_load,
    write=_write,
)
