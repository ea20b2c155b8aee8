"""Checking a data set: what it holds (images, objects per class, box sizes) and what is wrong with it.

:func:`check_dataset` indexes every split (or the one asked for) and returns a :class:`DataCheckReport`;
rendering is the CLI's job. Errors that make a split unusable (a missing image, malformed annotation, ...)
raise :class:`DataError` as when training. Problems that the loaders repair or that do not stop training are
collected instead:

- the loaders' repairs (:class:`DataWarnings`): boxes clipped to the image, zero-area boxes dropped,
  duplicate image ids;
- near-duplicate boxes: two boxes of the same class in one image with IoU >= 0.9 (an object annotated twice);
- an image whose header gives another size than its annotation (its boxes would not fit);
- with ``decode=True``, an image that does not decode (the index only reads the first bytes of each file);
- the same image in two of the train, val and test splits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssdcli.errors import DataError

from .coco import coco_splits, split_of
from .dataset import detect_format, open_index, read_image_rgb
from .records import DatasetIndex, DataWarnings, ImageRecord, image_size_from_header
from .voc import voc_splits

# Box-size histogram: edges of sqrt(box area) in pixels of the image file.
SIZE_EDGES: tuple[int, ...] = (16, 32, 64, 128, 256)
SIZE_LABELS: tuple[str, ...] = ("<16", "16-32", "32-64", "64-128", "128-256", ">=256")
NEAR_DUPLICATE_IOU = 0.9
_SPLIT_ORDER = ("train", "val", "trainval", "test")
_DISJOINT = (("train", "val"), ("train", "test"), ("val", "test"), ("trainval", "test"))


@dataclass(frozen=True)
class Problem:
    """One kind of problem found in one split (``split`` None: across splits)."""

    what: str
    count: int
    files: tuple[str, ...] = ()
    split: str | None = None


@dataclass(frozen=True)
class SplitSummary:
    """What one split holds. ``objects_per_class`` maps class names (no background) to object counts;
    ``size_histogram`` counts objects per bucket of :data:`SIZE_LABELS`; ``ignored`` counts difficult or crowd
    objects (included in ``objects``)."""

    split: str
    images: int
    objects: int
    ignored: int
    images_without_objects: int
    objects_per_class: dict[str, int]
    size_histogram: tuple[int, ...]
    warnings: DataWarnings = field(default_factory=DataWarnings)


@dataclass(frozen=True)
class DataCheckReport:
    root: Path
    format: str
    class_names: tuple[str, ...]
    splits: tuple[SplitSummary, ...]
    problems: tuple[Problem, ...]
    size_labels: tuple[str, ...] = SIZE_LABELS

    @property
    def ok(self) -> bool:
        return not self.problems


def size_histogram(boxes: np.ndarray) -> tuple[int, ...]:
    """Objects per bucket of sqrt(area) of xyxy pixel boxes [G, 4] (buckets :data:`SIZE_LABELS`)."""
    side = np.sqrt(np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0))
    bucket = np.searchsorted(np.asarray(SIZE_EDGES, dtype=np.float64), side, side="right")
    return tuple(int(c) for c in np.bincount(bucket, minlength=len(SIZE_LABELS)))


def near_duplicate_pairs(record: ImageRecord, threshold: float = NEAR_DUPLICATE_IOU) -> int:
    """Pairs of boxes of the same class in ``record`` whose IoU is at least ``threshold``."""
    boxes, labels = record.boxes.astype(np.float64), record.labels
    if len(boxes) < 2:
        return 0
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # [G]
    lt = np.maximum(boxes[:, None, :2], boxes[None, :, :2])  # [G, G, 2]
    rb = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)  # [G, G]
    iou = inter / (area[:, None] + area[None, :] - inter)
    same = labels[:, None] == labels[None, :]
    upper = np.triu(np.ones_like(same), k=1)
    return int((same & upper & (iou >= threshold)).sum())


def _annotation_file(index: DatasetIndex, record: ImageRecord) -> str:
    if index.format == "voc":
        return str(index.root / "Annotations" / f"{record.source_id}.xml")
    return record.path.name


def _splits(path: Path, format: str, split: str | None) -> list[str]:
    if split is not None:
        return [split]
    if path.is_file():
        return [split_of(path)]
    found = voc_splits(path) if format == "voc" else coco_splits(path)
    if not found:
        expected = "ImageSets/Main/<split>.txt" if format == "voc" else "annotations/instances_<split>.json"
        raise DataError(f"no splits found: expected {expected} ({format.upper()} layout)", path=path)
    known = [s for s in _SPLIT_ORDER if s in found]
    return known + [s for s in found if s not in known]


def _summarise(index: DatasetIndex, names: Sequence[str]) -> SplitSummary:
    labels = np.concatenate([r.labels for r in index.records]) if index.records else np.zeros(0, np.int64)
    boxes = np.concatenate([r.boxes for r in index.records]).reshape(-1, 4)
    per_label = np.bincount(labels, minlength=index.num_classes)
    per_class = dict.fromkeys(names, 0)
    per_class.update({name: int(per_label[k]) for k, name in enumerate(index.class_names) if k > 0})
    return SplitSummary(
        split=index.split,
        images=len(index.records),
        objects=int(labels.shape[0]),
        ignored=int(sum(int(r.ignore.sum()) for r in index.records)),
        images_without_objects=sum(1 for r in index.records if r.num_objects == 0),
        objects_per_class=per_class,
        size_histogram=size_histogram(boxes),
        warnings=index.warnings,
    )


@dataclass(frozen=True)
class _ImageFacts:
    size: tuple[int, int] | None  # (width, height) from the header; None if unreadable
    decodes: bool


def _inspect(path: Path, decode: bool) -> _ImageFacts:
    try:
        size: tuple[int, int] | None = image_size_from_header(path)
    except DataError:
        size = None
    if not decode:
        return _ImageFacts(size, True)
    try:
        read_image_rgb(path)
    except DataError:
        return _ImageFacts(size, False)
    return _ImageFacts(size, True)


def _record_problems(index: DatasetIndex, decode: bool, seen: dict[Path, _ImageFacts]) -> list[Problem]:
    duplicates: list[str] = []
    mismatched: list[str] = []
    unreadable: list[str] = []
    undecodable: list[str] = []
    for record in index.records:
        duplicates += [_annotation_file(index, record)] * near_duplicate_pairs(record)
        if record.path not in seen:
            seen[record.path] = _inspect(record.path, decode)
        facts = seen[record.path]
        if facts.size is None:
            unreadable.append(str(record.path))
        elif facts.size != (record.width, record.height):
            mismatched.append(str(record.path))
        if not facts.decodes:
            undecodable.append(str(record.path))
    kinds = (
        (f"near-duplicate box pairs (same class, IoU >= {NEAR_DUPLICATE_IOU:g})", duplicates),
        ("images whose size differs from the annotation", mismatched),
        ("images with an unreadable header", unreadable),
        ("images that do not decode", undecodable),
    )
    problems = [Problem(what, count, files, index.split) for what, count, files in index.warnings.items()]
    problems += [Problem(what, len(files), tuple(dict.fromkeys(files)), index.split) for what, files in kinds if files]
    return problems


def _overlaps(indexes: Sequence[DatasetIndex]) -> list[Problem]:
    by_split = {index.split: {record.path for record in index.records} for index in indexes}
    problems = []
    for a, b in _DISJOINT:
        if a in by_split and b in by_split:
            shared = sorted(by_split[a] & by_split[b])
            if shared:
                problems.append(Problem(f"images in both {a} and {b}", len(shared), tuple(map(str, shared))))
    return problems


def check_dataset(
    path: str | Path,
    split: str | None = None,
    format: str = "auto",
    classes: Sequence[str] | None = None,
    decode: bool = False,
) -> DataCheckReport:
    """Index and check a data set (every split found, or ``split``); see the module docstring.

    ``decode=True`` decodes every image (slow on large data sets); otherwise images are checked by their
    headers only.
    """
    path = Path(path)
    if format == "auto":
        format = detect_format(path)
    indexes = [open_index(path, name, format=format, classes=classes) for name in _splits(path, format, split)]
    names: list[str] = []
    for index in indexes:
        names += [name for name in index.class_names[1:] if name not in names]
    seen: dict[Path, _ImageFacts] = {}
    problems = [problem for index in indexes for problem in _record_problems(index, decode, seen)]
    problems += _overlaps(indexes)
    return DataCheckReport(
        root=path,
        format=format,
        class_names=tuple(names),
        splits=tuple(_summarise(index, names) for index in indexes),
        problems=tuple(problems),
    )
