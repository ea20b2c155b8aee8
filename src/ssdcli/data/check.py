"""Checking a data set: what it holds (images, objects per class, box sizes) and what is wrong with it.

:func:`check_dataset` indexes every split (or the one asked for) and returns a :class:`DataCheckReport`;
rendering is the CLI's job. Errors that make a split unusable (a missing image, malformed annotation, ...)
raise :class:`DataError` as when training. Problems that the loaders repair or that do not stop training are
collected instead:

- the loaders' repairs (:class:`DataWarnings`): boxes clipped to the image, zero-area boxes dropped,
  duplicate image ids;
- near-duplicate boxes: two boxes of the same class in one image with IoU >= 0.9 (an object annotated twice);
- an image whose pixels (with ``decode=True``, else its header) have another size than its annotation;
- with ``decode=True``, every image decoded once as training does before its first step
  (:mod:`ssdcli.data.verify`): images that do not decode, JPEGs cut short;
- file names used by two different image files (outputs named after them would collide);
- a split that cannot be used at all (missing or empty split file, no objects, ...): reported, and the other
  splits are still checked;
- the same image in two of the train, val and test splits;
- a split without any object that is not ignored (nothing to train on or to score), and an annotation file
  that the evaluator refuses (COCO ids given twice or not at all).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssdcli.errors import DataError

from . import formats
from .dataset import open_index
from .formats import FormatEntry
from .records import (
    DatasetIndex,
    DataWarnings,
    ImageRecord,
    image_size_from_header,
    why_no_targets,
)
from .verify import OK, TRUNCATED, UNDECODABLE, check_images

# Box-size histogram: edges of sqrt(box area) in pixels of the image file.
SIZE_EDGES: tuple[int, ...] = (16, 32, 64, 128, 256)
SIZE_LABELS: tuple[str, ...] = ("<16", "16-32", "32-64", "64-128", "128-256", ">=256")
NEAR_DUPLICATE_IOU = 0.9
#: Below this many images, a check decodes every image unless told otherwise.
DECODE_BELOW = 10_000
_SPLIT_ORDER = ("train", "val", "trainval", "test")
_DISJOINT = (("train", "val"), ("train", "test"), ("val", "test"), ("trainval", "test"))


@dataclass(frozen=True)
class Problem:
    """One kind of problem found in one split (``split`` None: across splits)."""

    what: str
    count: int
    files: tuple[str, ...] = ()
    split: str | None = None
    fatal: bool = False  # the split cannot be used at all


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

    decoded: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def fatal(self) -> tuple[Problem, ...]:
        """Problems that make a split unusable (training on it would stop with an error)."""
        return tuple(problem for problem in self.problems if problem.fatal)

    def to_dict(self) -> dict[str, object]:
        """JSON-able form for scripts: the splits' contents and every problem with all its files."""
        return {
            "root": str(self.root),
            "format": self.format,
            "decoded": self.decoded,
            "classes": list(self.class_names),
            "splits": [
                {
                    "split": s.split,
                    "images": s.images,
                    "objects": s.objects,
                    "ignored": s.ignored,
                    "images_without_objects": s.images_without_objects,
                    "objects_per_class": s.objects_per_class,
                    "size_histogram": dict(zip(self.size_labels, s.size_histogram)),
                }
                for s in self.splits
            ],
            "problems": [
                {"split": p.split, "problem": p.what, "count": p.count, "files": list(p.files), "fatal": p.fatal} for p in self.problems
            ],
        }


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


def _splits(path: Path, format: FormatEntry, split: str | None) -> list[str]:
    if split is not None:
        return [split]
    found = format.list_splits(path)
    if not found:
        expected = format.splits_hint
        raise DataError(f"no splits found: expected {expected} ({format.name.upper()} layout)", path=path)
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
    size: tuple[int, int] | None  # (width, height) from the pixels or the header; None if unreadable
    status: str  # verify.OK, TRUNCATED or UNDECODABLE; OK when not decoded
    orientation: int = 1  # EXIF orientation tag (decoded checks only)


def _header_facts(path: Path) -> _ImageFacts:
    try:
        return _ImageFacts(image_size_from_header(path), OK)
    except DataError:
        return _ImageFacts(None, OK)


def _image_facts(indexes: Sequence[DatasetIndex], decode: bool, workers: int) -> dict[Path, _ImageFacts]:
    paths = list(dict.fromkeys(record.path for index in indexes for record in index.records))
    if not decode:
        return {path: _header_facts(path) for path in paths}
    checks = check_images(paths, workers)
    return {
        path: _ImageFacts((c.width, c.height) if c.status != UNDECODABLE else None, c.status, c.orientation)
        for path, c in checks.items()
    }


def _record_problems(
    index: DatasetIndex, facts: dict[Path, _ImageFacts], format: FormatEntry
) -> list[Problem]:
    duplicates: list[str] = []
    mismatched: list[str] = []
    unreadable: list[str] = []
    undecodable: list[str] = []
    truncated: list[str] = []
    rotated: list[str] = []
    for record in index.records:
        duplicates += [format.annotation_file(index, record)] * near_duplicate_pairs(record)
        found = facts[record.path]
        if found.status == UNDECODABLE:
            undecodable.append(str(record.path))
        elif found.size is None:
            unreadable.append(str(record.path))
        elif found.size != (record.width, record.height):
            mismatched.append(str(record.path))
        if found.status == TRUNCATED:
            truncated.append(str(record.path))
        if found.orientation != 1:
            rotated.append(str(record.path))
    kinds = (
        (f"near-duplicate box pairs (same class, IoU >= {NEAR_DUPLICATE_IOU:g})", duplicates),
        ("images whose size differs from the annotation", mismatched),
        ("images with an unreadable header", unreadable),
        ("images that do not decode (left out when training)", undecodable),
        ("truncated images (decoded as far as their data goes)", truncated),
        ("images with an EXIF orientation tag (used as stored: boxes refer to the stored pixels)", rotated),
    )
    problems = [Problem(what, count, files, index.split) for what, count, files in index.warnings.items()]
    problems += [Problem(what, len(files), tuple(dict.fromkeys(files)), index.split) for what, files in kinds if files]
    return problems


def _usability_problems(index: DatasetIndex) -> list[Problem]:
    """A split that training cannot learn from nor evaluation score (no object that is not ignored), and an
    annotation file the evaluator refuses (validation on it would stop after the first epoch)."""
    problems = []
    source = str(index.annotations_file or index.root)
    empty = why_no_targets(index)
    if empty is not None:
        problems.append(Problem(f"no object to train on or to score: {empty}", 1, (source,), index.split))
    if index.unevaluable is not None:
        problems.append(
            Problem(f"cannot be evaluated (validation, eval): {index.unevaluable}", 1, (source,), index.split)
        )
    return problems


def _same_names(indexes: Sequence[DatasetIndex]) -> list[Problem]:
    by_name: dict[str, set[Path]] = {}
    for index in indexes:
        for record in index.records:
            by_name.setdefault(record.path.name, set()).add(record.path)
    shared = sorted(str(path) for paths in by_name.values() if len(paths) > 1 for path in paths)
    return [Problem("file names shared by different image files", len(shared), tuple(shared))] if shared else []


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
    decode: bool | None = None,
    workers: int = 2,
) -> DataCheckReport:
    """Index and check a data set (every split found, or ``split``); see the module docstring.

    ``decode=True`` decodes every image once (``workers`` threads); ``False`` checks images by their headers
    only; ``None`` decodes when the splits hold fewer than :data:`DECODE_BELOW` images. A split that cannot be opened at all is a problem of the report; if no split opens, the
    first split's :class:`DataError` is raised.
    """
    path = Path(path)
    entry = formats.resolve_format(path, format)
    indexes: list[DatasetIndex] = []
    problems: list[Problem] = []
    errors: list[DataError] = []
    for name in _splits(path, entry, split):
        try:
            indexes.append(open_index(path, name, format=entry.name, classes=classes, check_images=False))
        except DataError as error:
            errors.append(error)
            problems.append(Problem(f"split cannot be used: {error.message}", 1, (error.path or str(path),), name, True))
    if not indexes:
        raise errors[0]
    names: list[str] = []
    for index in indexes:
        names += [name for name in index.class_names[1:] if name not in names]
    if decode is None:
        decode = sum(len(index) for index in indexes) < DECODE_BELOW
    facts = _image_facts(indexes, decode, workers)
    problems += [problem for index in indexes for problem in _record_problems(index, facts, entry)]
    problems += [problem for index in indexes for problem in _usability_problems(index)]
    problems += _same_names(indexes)
    problems += _overlaps(indexes)
    return DataCheckReport(
        root=path,
        format=entry.name,
        class_names=tuple(names),
        splits=tuple(_summarise(index, names) for index in indexes),
        problems=tuple(problems),
        decoded=decode,
    )
