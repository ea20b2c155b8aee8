"""Plain records of a detection data set, shared by the VOC and COCO adapters.

Box format everywhere in this module: ``xyxy`` pixels, 0-based continuous (the left edge of the first pixel
column is x = 0, the right edge of the last one is x = width), so a box covering pixel columns 3..7 is
x1 = 3, x2 = 8.

Besides the records, this module holds the few steps every adapter applies in the same way: clipping boxes to
the image and dropping zero-area ones (counted in :class:`DataWarnings`), and the cheap image-file check done
at index time (the first bytes must be a known image signature; nothing is decoded).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssdcli.errors import DataError, UsageError

from .images import read_image_bytes

BACKGROUND = "background"

# How many file names a warning line quotes before "and N more".
_FILES_QUOTED = 3

# First bytes of the image formats OpenCV decodes (signature, offset).
_SIGNATURES: tuple[tuple[bytes, int], ...] = (
    (b"\xff\xd8\xff", 0),  # JPEG
    (b"\x89PNG\r\n\x1a\n", 0),  # PNG
    (b"BM", 0),  # BMP
    (b"GIF87a", 0),
    (b"GIF89a", 0),
    (b"II*\x00", 0),  # TIFF, little endian
    (b"MM\x00*", 0),  # TIFF, big endian
    (b"WEBP", 8),  # RIFF....WEBP
)
_HEADER_BYTES = 16


@dataclass(frozen=True)
class ImageRecord:
    """One annotated image.

    image_id: contiguous 0..N-1 within the data set.
    source_id: the data set's own id (VOC: the id string of the split file; COCO: the image id of the JSON).
    boxes: [G, 4] float32 xyxy pixels, 0-based continuous, clipped to the image, every box with positive area.
    labels: [G] int64 contiguous class labels 1..C-1 (0 is background).
    ignore: [G] bool, True for objects that are not training targets (VOC ``difficult``, COCO ``iscrowd``).
    """

    image_id: int
    source_id: str | int
    path: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray

    @property
    def num_objects(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class DataWarnings:
    """Annotation problems that were repaired while indexing, with the files they were found in.

    clipped_boxes: boxes reaching outside the image, clipped to it and kept.
    zero_area_boxes: boxes with no area (as written, or after clipping: wholly outside the image), dropped.
    duplicate_ids: image ids listed more than once (VOC split file, COCO ``images``), kept once.
    The image checks before training (:mod:`ssdcli.data.verify`) add:
    truncated_images: JPEGs cut short, decoded as far as their data goes and kept.
    undecodable_images: images that do not decode at all, left out of the index.
    resized_images: images whose pixels have another size than the annotation says; the pixels' size is used.
    rotated_images: images with an EXIF orientation tag, used as stored (a viewer shows them turned).
    Signs that a whole split was written wrong, counted only when they hold for most of it (YOLO):
    unlabelled_images: the label files expected for images that have none (the images are kept as background).
    pixel_lines: label lines with a coordinate above 1 (pixels, not values normalised to [0, 1]), in
    ``pixel_files``; their boxes are clipped or dropped as any other.
    """

    clipped_boxes: int = 0
    zero_area_boxes: int = 0
    duplicate_ids: int = 0
    clipped_files: tuple[str, ...] = ()
    zero_area_files: tuple[str, ...] = ()
    duplicate_id_files: tuple[str, ...] = ()
    truncated_images: tuple[str, ...] = ()
    undecodable_images: tuple[str, ...] = ()
    resized_images: tuple[str, ...] = ()
    rotated_images: tuple[str, ...] = ()
    unlabelled_images: tuple[str, ...] = ()
    pixel_lines: int = 0
    pixel_files: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(count for _, count, _ in self.items())

    def items(self) -> list[tuple[str, int, tuple[str, ...]]]:
        """(what was done, count, files) for every kind of warning with a non-zero count."""
        kinds = (
            ("boxes reaching outside the image clipped", self.clipped_boxes, self.clipped_files),
            ("zero-area boxes dropped", self.zero_area_boxes, self.zero_area_files),
            ("repeated image ids ignored", self.duplicate_ids, self.duplicate_id_files),
            ("truncated images decoded as far as their data goes", len(self.truncated_images), self.truncated_images),
            ("images that do not decode left out", len(self.undecodable_images), self.undecodable_images),
            ("image sizes taken from the pixels, not the annotation", len(self.resized_images), self.resized_images),
            (
                "images with an EXIF orientation tag used as stored (boxes refer to the stored pixels)",
                len(self.rotated_images),
                self.rotated_images,
            ),
            (
                "images without a label file, most of the split (kept as background: is labels/ missing or elsewhere?)",
                len(self.unlabelled_images),
                self.unlabelled_images,
            ),
            (
                "label lines with coordinates above 1, most of the split (pixels, not values normalised to [0, 1]?)",
                self.pixel_lines,
                self.pixel_files,
            ),
        )
        return [kind for kind in kinds if kind[1]]

    def summary(self) -> str | None:
        """One line for the user, e.g. ``2 zero-area boxes dropped (a.xml, b.xml)``; None if nothing happened."""
        parts = [f"{count} {what} ({quote_files(files)})" for what, count, files in self.items()]
        return "; ".join(parts) if parts else None


@dataclass(frozen=True)
class DatasetIndex:
    """Every record of one split of a data set, and how its labels map to class names and ids.

    class_names: index 0 is ``"background"``; label k of a record is ``class_names[k]``.
    category_ids: the data set's own id of each label (COCO: the category id, index 0 unused and 0;
        VOC: 0..C-1, the label itself), used to write results in the data set's ids.
    annotations_file: COCO: the instances JSON the split was read from (evaluation scores against it as
        written); None for VOC (one XML file per image under ``root``).
    unevaluable: why the evaluator cannot score against the split's annotations as written (COCO: ids that
        pycocotools cannot index), checked before anything runs on them; None when it can.
    """

    root: Path
    format: str
    split: str
    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]
    records: tuple[ImageRecord, ...]
    warnings: DataWarnings = field(default_factory=DataWarnings)
    annotations_file: Path | None = None
    unevaluable: str | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes including background."""
        return len(self.class_names)

    @property
    def num_objects(self) -> int:
        return sum(r.num_objects for r in self.records)

    @property
    def num_targets(self) -> int:
        """Objects that training learns from and evaluation scores: not ignored (difficult, crowd)."""
        return sum(int((~r.ignore).sum()) for r in self.records)

    def __len__(self) -> int:
        return len(self.records)


@dataclass
class WarningCounter:
    """Mutable tally used while one adapter builds an index; frozen into :class:`DataWarnings` at the end."""

    clipped: list[str] = field(default_factory=list)
    zero_area: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)
    pixel_lines: list[str] = field(default_factory=list)  # the file of each line

    def freeze(self) -> DataWarnings:
        return DataWarnings(
            clipped_boxes=len(self.clipped),
            zero_area_boxes=len(self.zero_area),
            duplicate_ids=len(self.duplicates),
            clipped_files=tuple(dict.fromkeys(self.clipped)),
            zero_area_files=tuple(dict.fromkeys(self.zero_area)),
            duplicate_id_files=tuple(dict.fromkeys(self.duplicates)),
            unlabelled_images=tuple(self.unlabelled),
            pixel_lines=len(self.pixel_lines),
            pixel_files=tuple(dict.fromkeys(self.pixel_lines)),
        )


def why_no_targets(index: DatasetIndex) -> str | None:
    """None when ``index`` holds an object that training learns from and evaluation scores; else why it holds
    none, e.g. ``all 4 objects are ignored (crowd)`` or ``no label file for 5 of its 5 images, e.g. ...``."""
    if index.num_targets:
        return None
    warnings = index.warnings
    if index.num_objects:
        kind = {"coco": "crowd (iscrowd)", "voc": "difficult"}.get(index.format, "difficult or crowd")
        return f"all {index.num_objects} objects are ignored as {kind}"
    if warnings.unlabelled_images:
        return (
            f"no label file for {len(warnings.unlabelled_images)} of its {len(index)} images, "
            f"e.g. {warnings.unlabelled_images[0]}"
        )
    return warnings.summary() or f"none of its {len(index)} images is annotated with an object"


def quote_files(files: Sequence[str]) -> str:
    """``a, b, c and 4 more`` (file names only, not full paths)."""
    names = [Path(f).name for f in files]
    shown = ", ".join(names[:_FILES_QUOTED])
    return shown if len(names) <= _FILES_QUOTED else f"{shown} and {len(names) - _FILES_QUOTED} more"


def normalise_classes(classes: Sequence[str]) -> tuple[str, ...]:
    """Validate a user-given class list; a leading ``"background"`` is accepted and dropped.

    Returns the object class names (without background), in label order 1..C-1.
    """
    if isinstance(classes, str):
        raise UsageError(f"classes: expected a list of class names, got the string {classes!r}")
    names = [str(c).strip() for c in classes]
    if names and names[0] == BACKGROUND:
        names = names[1:]
    if not names:
        raise UsageError("classes: the class list is empty")
    if BACKGROUND in names:
        raise UsageError(f"classes: {BACKGROUND!r} is reserved for label 0 and may only come first")
    seen: set[str] = set()
    for name in names:
        if not name:
            raise UsageError("classes: empty class name")
        if name in seen:
            raise UsageError(f"classes: {name!r} is listed twice")
        seen.add(name)
    return tuple(names)


def unknown_class_hint(name: str, known: Sequence[str]) -> str:
    """``; did you mean 'x'?`` when a known name is close, else `` (known: a, b, c)``."""
    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"


def clip_boxes(boxes: np.ndarray, width: int, height: int, source: str, counter: WarningCounter) -> np.ndarray:
    """Clip xyxy pixel boxes [G, 4] to the image [0, width] x [0, height] in place; return the keep mask [G].

    Boxes that reach outside the image are clipped and counted; boxes left with zero width or height (already
    as written, or wholly outside the image) are not kept and are counted. ``source`` is the file named in the
    counts. The caller has already rejected boxes with x2 < x1 or y2 < y1.
    """
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    limits = np.array([width, height, width, height], dtype=boxes.dtype)
    clipped = np.clip(boxes, 0, limits)
    changed = (clipped != boxes).any(axis=1)
    boxes[:] = clipped
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    counter.clipped.extend([source] * int((changed & keep).sum()))
    counter.zero_area.extend([source] * int((~keep).sum()))
    return keep


def check_image_file(path: Path) -> None:
    """Raise :class:`DataError` naming ``path`` if it is missing, empty, or does not start like an image.

    Reads only the first bytes; a file that starts right but does not decode is caught when it is loaded.
    """
    head = read_image_bytes(path, _HEADER_BYTES)
    if not head:
        raise DataError("image file is empty", path=path)
    if not any(head[offset : offset + len(magic)] == magic for magic, offset in _SIGNATURES):
        raise DataError("not an image file (unknown or corrupt header)", path=path)


def image_size_from_header(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return int(image.width), int(image.height)
    except FileNotFoundError:
        raise DataError("image file not found", path=path) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"corrupt image header: {error}", path=path) from None


def make_record(
    image_id: int,
    source_id: str | int,
    path: Path,
    width: int,
    height: int,
    boxes: Sequence[Sequence[float]],
    labels: Sequence[int],
    ignore: Sequence[bool],
    source: str,
    counter: WarningCounter,
    degenerate: Sequence[bool] | None = None,
) -> ImageRecord:
    """Build an :class:`ImageRecord` from xyxy pixel boxes: clip, drop zero-area boxes, fix dtypes and shapes.

    ``degenerate`` [G] marks boxes that the adapter found to have no extent as written in the file (a format
    may turn those into boxes of positive size, as VOC's inclusive pixel indices do); they are dropped and
    counted as zero-area.
    """
    boxes_np = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)  # [G, 4]
    labels_np = np.asarray(labels, dtype=np.int64).reshape(-1)  # [G]
    ignore_np = np.asarray(ignore, dtype=bool).reshape(-1)  # [G]
    if degenerate is not None:
        written = ~np.asarray(degenerate, dtype=bool).reshape(-1)  # [G]
        counter.zero_area.extend([source] * int((~written).sum()))
        boxes_np, labels_np, ignore_np = boxes_np[written], labels_np[written], ignore_np[written]
    keep = clip_boxes(boxes_np, width, height, source, counter)
    return ImageRecord(
        image_id=image_id,
        source_id=source_id,
        path=path,
        width=int(width),
        height=int(height),
        boxes=np.ascontiguousarray(boxes_np[keep]),
        labels=labels_np[keep],
        ignore=ignore_np[keep],
    )
