"""YOLO adapter: Ultralytics-style data sets (``data.yaml`` or ``images/<split>/`` + ``labels/<split>/``) as a
:class:`DatasetIndex`.

Layouts found by :func:`find_yolo`::

    ROOT/data.yaml                          path, train, val, test, names (a list, or a dict id -> name)
    ROOT/images/<split>/<name>.jpg          without data.yaml: the splits are the folders of images/
    ROOT/labels/<split>/<name>.txt          one line per object: class cx cy w h (normalised to [0, 1]),
                                            optionally a score in [0, 1] after them (ssd predict --save-conf)

A split in ``data.yaml`` is a folder of images, a text file listing image paths, or a list of either; paths are
relative to ``path`` (itself relative to the YAML file's folder). As in Ultralytics, the label file of
``.../images/.../x.jpg`` is ``.../labels/.../x.txt`` (the last ``images`` folder of the path becomes
``labels``). Roboflow's ``train/images`` + ``train/labels`` layout fits the same rule.

Policy (docs/data.md): an image without a label file, or with an empty one, is a background image; a malformed
line, a class id that is not a whole number (``1.0`` is read as 1) or one outside ``names`` is a
:class:`DataError` naming the file and line; coordinates outside [0, 1] are clipped to the image and counted,
boxes left without area are dropped and counted. When most images of a split have no label file, or most lines
have a coordinate above 1 (pixels), that is counted too. ``nc`` must agree with ``names``.
Without class names (no ``data.yaml``, no ``classes.txt``), class k is named ``"k"``, unless ``classes`` names them.
Labels are 1..C-1 for class ids 0..C-2; ``category_ids`` is the label itself (as for VOC).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssdcli.errors import DataError

from ..files import read_text
from ..images import IMAGE_SUFFIXES
from ..records import (
    BACKGROUND,
    DatasetIndex,
    ImageRecord,
    WarningCounter,
    check_image_file,
    image_size_from_header,
    make_record,
    normalise_classes,
)
from .entry import FormatEntry, OutputNames, copy_image
from .writers import yolo_data_yaml, yolo_lines

YAML_NAMES = ("data.yaml", "data.yml")
CLASS_FILES = ("classes.txt", "obj.names")
# Normalised coordinates with 6 decimals land up to 0.5e-6 of the side off: well below this, in pixels.
_EDGE_TOLERANCE_PX = 0.01


@dataclass(frozen=True)
class YoloLayout:
    """Where one YOLO data set keeps its splits: split name -> image folders or list files, and class names."""

    root: Path
    splits: dict[str, tuple[Path, ...]]
    names: tuple[str, ...] | None
    source: Path  # the data.yaml, or the root folder


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    text = read_text(path, "data set file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DataError(f"malformed YAML: {str(error).splitlines()[0]}", path=path) from None
    if not isinstance(data, dict):
        raise DataError("malformed data.yaml: expected keys such as path, train, val, names", path=path)
    return data


def _names_from_yaml(value: Any, path: Path) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    if isinstance(value, dict):
        try:
            ids = sorted(int(k) for k in value)
        except (TypeError, ValueError):
            raise DataError(f"malformed data.yaml: names keys must be class ids, got {list(value)}", path=path) from None
        if ids != list(range(len(ids))):
            raise DataError(f"malformed data.yaml: names ids must be 0..{len(ids) - 1}, got {ids}", path=path)
        by_id = {int(k): str(v) for k, v in value.items()}
        return tuple(by_id[i] for i in ids)
    raise DataError(f"malformed data.yaml: names must be a list or a mapping, got {type(value).__name__}", path=path)


def _names_from_file(root: Path) -> tuple[str, ...] | None:
    for name in CLASS_FILES:
        path = root / name
        if path.is_file():
            return tuple(line.strip() for line in read_text(path, "class names file").splitlines() if line.strip())
    return None


def yaml_file(path: Path) -> Path | None:
    """The data.yaml of ``path``: the file itself, or the one in the folder."""
    if path.is_file():
        return path if path.suffix.lower() in (".yaml", ".yml") else None
    return next((path / name for name in YAML_NAMES if (path / name).is_file()), None)


def is_yolo(path: Path) -> bool:
    """True for a data.yaml file, a folder holding one, or a folder with ``images/`` and ``labels/``."""
    return yaml_file(path) is not None or ((path / "images").is_dir() and (path / "labels").is_dir())


def find_yolo(path: str | Path) -> YoloLayout:
    """Read the layout of a YOLO data set (see the module docstring); DataError naming the path if there is none."""
    path = Path(path)
    if not path.exists():
        raise DataError("data set not found", path=path)
    config = yaml_file(path)
    if config is None:
        if not ((path / "images").is_dir() and (path / "labels").is_dir()):
            raise DataError("not a YOLO data set: expected data.yaml, or images/ and labels/ folders", path=path)
        folders: dict[str, tuple[Path, ...]] = {d.name: (d,) for d in sorted((path / "images").iterdir()) if d.is_dir()}
        return YoloLayout(path, folders, _names_from_file(path), path)
    data = _read_yaml(config)
    base = Path(str(data.get("path") or "."))
    root = base if base.is_absolute() else (config.parent / base)
    splits: dict[str, tuple[Path, ...]] = {}
    for key, value in data.items():
        if key in ("path", "names", "nc", "download") or value is None:
            continue
        entries = value if isinstance(value, list) else [value]
        if not all(isinstance(e, str) for e in entries):
            continue  # other keys (e.g. numbers) are not splits
        splits[str(key)] = tuple(Path(e) if Path(e).is_absolute() else root / e for e in entries)
    names = _names_from_yaml(data.get("names"), config)
    if names is None:
        names = _names_from_file(root)
    return YoloLayout(root, splits, _counted_names(data.get("nc"), names, config), config)


def _counted_names(count: Any, names: tuple[str, ...] | None, path: Path) -> tuple[str, ...] | None:
    """The class names checked against data.yaml's ``nc`` (when given); ``nc`` alone names class k ``"k"``."""
    if count is None:
        return names
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise DataError(f"malformed data.yaml: nc must be a positive whole number, got {count!r}", path=path)
    if names is None:
        return tuple(str(k) for k in range(count))
    if len(names) != count:
        raise DataError(f"nc is {count} but there are {len(names)} class names {list(names)}", path=path)
    return names


def yolo_splits(path: str | Path) -> list[str]:
    return list(find_yolo(path).splits)


def label_file(image: Path) -> Path:
    """The label file of an image: the last ``images`` folder of its path becomes ``labels``, suffix ``.txt``."""
    parts = list(image.parts)
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] == "images":
            parts[k] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _split_images(entries: Sequence[Path], source: Path) -> list[Path]:
    images: list[Path] = []
    for entry in entries:
        if entry.is_dir():
            images += sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif entry.is_file() and entry.suffix.lower() == ".txt":
            for line in read_text(entry, "split file").splitlines():
                if line.strip():
                    listed = Path(line.strip())
                    images.append(listed if listed.is_absolute() else (entry.parent / listed))
        elif entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
            images.append(entry)
        else:
            raise DataError("split not found: expected a folder of images or a text file listing them", path=entry)
    return list(dict.fromkeys(images))


@dataclass(frozen=True)
class _Line:
    class_id: int
    box: tuple[float, float, float, float]  # cx, cy, w, h normalised


def parse_label_file(path: Path) -> list[_Line]:
    """The objects of one label file (none when there is no file); DataError naming the file and line for a
    malformed line. A score after the box (``ssd predict --save-conf``) is checked and not kept: every line read
    is an object."""
    if not path.exists():
        return []
    text = read_text(path, "label file")
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (5, 6):
            hint = " (a segmentation polygon? only boxes are read)" if len(fields) > 6 else ""
            raise DataError(f"line {number}: expected 'class cx cy w h', got {line.strip()!r}{hint}", path=path)
        try:
            written_id = float(fields[0])
            values = tuple(float(v) for v in fields[1:5])
            score = float(fields[5]) if len(fields) == 6 else 1.0
        except ValueError:
            raise DataError(f"line {number}: not numbers: {line.strip()!r}", path=path) from None
        if not 0.0 <= score <= 1.0:  # a polygon has at least 3 points: 7 fields; a 6th number is a score
            raise DataError(f"line {number}: the 6th column, a score, must be in [0, 1]: {line.strip()!r}", path=path)
        if np.isfinite(written_id) and not written_id.is_integer():
            raise DataError(f"line {number}: class id {fields[0]} is not a whole number: {line.strip()!r}", path=path)
        class_id = int(written_id) if np.isfinite(written_id) else -1
        if class_id < 0 or not np.isfinite(values).all() or values[2] < 0 or values[3] < 0:
            raise DataError(f"line {number}: negative class, size or non-finite number: {line.strip()!r}", path=path)
        lines.append(_Line(class_id, values))  # type: ignore[arg-type]
    return lines


def _snap(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """xyxy pixels [4] with coordinates within the format's rounding of an image edge put on the edge, so that a
    box written at the edge is not counted as reaching outside."""
    limits = np.array([width, height, width, height], dtype=np.float64)
    box = np.where(np.abs(box) < _EDGE_TOLERANCE_PX, 0.0, box)
    return np.where(np.abs(box - limits) < _EDGE_TOLERANCE_PX, limits, box)


def _source_id(image: Path, entries: Sequence[Path]) -> str:
    for entry in entries:
        if entry.is_dir() and image.is_relative_to(entry):
            return image.relative_to(entry).with_suffix("").as_posix()
    return image.stem


def load_yolo(
    path: str | Path,
    split: str,
    classes: Sequence[str] | None = None,
    check_images: bool = True,
) -> DatasetIndex:
    """Index one split of a YOLO data set (see the module docstring).

    Args:
        path: a data.yaml file, a folder holding one, or a folder with ``images/<split>/`` and ``labels/<split>/``.
        split: a split key of data.yaml (``train``, ``val``, ``test``) or a folder name under ``images/``.
        classes: names of the class ids 0, 1, ... in order; default: data.yaml's ``names`` (or ``classes.txt``).
            When both exist they must agree, so that class k means the same in every split.
        check_images: check that every image file exists and starts with an image header.
    """
    # torch: not at import, the format registry is read by `ssd --help`
    from ssdcli.core.boxes import cxcywh_to_xyxy

    layout = find_yolo(path)
    if split not in layout.splits:
        found = ", ".join(layout.splits) or "none"
        raise DataError(f"split {split!r} not found (splits: {found})", path=layout.source)
    entries = layout.splits[split]
    images = _split_images(entries, layout.source)
    if not images:
        raise DataError(f"the {split!r} split holds no images", path=entries[0])
    labels = [parse_label_file(label_file(image)) for image in images]
    names = _class_names(layout, classes, labels, images)
    counter = WarningCounter()
    _count_split_signs(images, labels, counter)
    records: list[ImageRecord] = []
    for image, lines in zip(images, labels):
        if check_images:
            check_image_file(image)
        width, height = image_size_from_header(image)
        source = str(label_file(image))
        boxes, ids = [], []
        for number, line in enumerate(lines, start=1):
            if line.class_id >= len(names):
                raise DataError(
                    f"object {number}: class id {line.class_id} is outside the {len(names)} class names", path=source
                )
            box = cxcywh_to_xyxy(np.array(line.box)) * np.array([width, height, width, height])
            boxes.append(_snap(box, width, height).tolist())
            ids.append(line.class_id + 1)
        records.append(
            make_record(
                image_id=len(records),
                source_id=_source_id(image, entries),
                path=image,
                width=width,
                height=height,
                boxes=boxes,
                labels=ids,
                ignore=[False] * len(ids),
                source=source,
                counter=counter,
                degenerate=[line.box[2] == 0 or line.box[3] == 0 for line in lines],
            )
        )
    return DatasetIndex(
        root=layout.root,
        format="yolo",
        split=split,
        class_names=(BACKGROUND, *names),
        category_ids=tuple(range(len(names) + 1)),
        records=tuple(records),
        warnings=counter.freeze(),
    )


def _count_split_signs(images: Sequence[Path], labels: Sequence[list[_Line]], counter: WarningCounter) -> None:
    """Count what suggests a split written wrong, when it holds for most of the split: images without a label
    file (labels/ missing or elsewhere), label lines with coordinates above 1 (pixels written, not normalised)."""
    missing = [str(label_file(image)) for image in images if not label_file(image).exists()]
    if 2 * len(missing) > len(images):
        counter.unlabelled.extend(missing)
    lines = [(str(label_file(image)), line) for image, found in zip(images, labels) for line in found]
    pixels = [source for source, line in lines if max(line.box) > 1.0]
    if 2 * len(pixels) > len(lines):
        counter.pixel_lines.extend(pixels)


def _class_names(
    layout: YoloLayout, classes: Sequence[str] | None, labels: Sequence[list[_Line]], images: Sequence[Path]
) -> tuple[str, ...]:
    if classes is not None:
        given = normalise_classes(classes)
        if layout.names is not None and tuple(layout.names) != given:
            raise DataError(
                f"the classes {list(given)} differ from the data set's names {list(layout.names)}", path=layout.source
            )
        return given
    if layout.names is not None:
        return normalise_classes(layout.names)
    most = max((line.class_id for lines in labels for line in lines), default=-1)
    if most < 0:
        raise DataError("no objects in any image of this split and no class names: cannot derive the class list",
                        path=images[0].parent)
    return tuple(str(k) for k in range(most + 1))


def _load(path: Path, split: str, classes: Sequence[str] | None = None, check_images: bool = True) -> DatasetIndex:
    return load_yolo(path, split, classes=classes, check_images=check_images)


def write_yolo(root: Path, indexes: list[DatasetIndex], notes: list[str]) -> None:
    """Every split of ``indexes`` as a YOLO data set in ``root``: ``images/<split>/``, ``labels/<split>/`` and a
    ``data.yaml``; objects flagged difficult or crowd are left out (YOLO cannot mark them) and counted."""
    left_out = 0
    for index in indexes:
        images, labels = root / "images" / index.split, root / "labels" / index.split
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        names = OutputNames()
        for record in index.records:
            name = names(record.path)
            copy_image(record.path, images / name)
            kept = ~record.ignore
            left_out += int((~kept).sum())
            text = yolo_lines(record.boxes[kept], (record.labels[kept] - 1).tolist(), record.width, record.height)
            (labels / f"{Path(name).stem}.txt").write_text(text)
    splits = {index.split: f"images/{index.split}" for index in indexes}
    (root / "data.yaml").write_text(yolo_data_yaml(splits, indexes[0].class_names[1:]))
    if left_out:
        notes.append(f"{left_out} difficult or crowd objects left out: YOLO labels cannot mark an object as ignored")


def _annotation_file(index: DatasetIndex, record: ImageRecord) -> str:
    return str(label_file(record.path))


YOLO = FormatEntry(
    name="yolo",
    paths="YOLO root or data.yaml",
    folder_layout="data.yaml or images/ and labels/ (YOLO)",
    splits_hint="train/val/test in data.yaml, or images/<split>/",
    detect=is_yolo,
    list_splits=yolo_splits,
    load=_load,
    write=write_yolo,
    file_kind="a YOLO data.yaml",
    annotation_file=_annotation_file,
)
