"""Pascal VOC adapter: a split of a VOC-layout folder as a :class:`DatasetIndex`.

Layout (the VOC devkit's)::

    ROOT/Annotations/<id>.xml          one file per image (size, objects with name, bndbox, difficult)
    ROOT/JPEGImages/<id>.jpg           the images (another suffix, or the XML's <filename>, is found too)
    ROOT/ImageSets/Main/<split>.txt    the ids of a split, one per line

Boxes: VOC files hold 1-based inclusive pixel indices; records hold 0-based continuous xyxy pixels
(x1 = xmin - 1, x2 = xmax). A box written with xmax == xmin or ymax == ymin (a point or a line) is counted as
zero-area and dropped; one with xmax < xmin or ymax < ymin is an error. ``difficult`` objects are kept with
``ignore = True``. The image size comes from the XML's <size> (or, where that is missing or 0, from the image
header); no image is decoded while indexing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ssdcli.errors import DataError

from ..records import (
    BACKGROUND,
    DatasetIndex,
    ImageRecord,
    WarningCounter,
    check_image_file,
    image_size_from_header,
    make_record,
    normalise_classes,
    unknown_class_hint,
)
from .entry import FormatEntry, OutputNames, copy_image
from .voc_xml import VocAnnotation, parse_voc_xml, read_split
from .writers import record_voc_xml

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG")


def is_voc_root(path: Path) -> bool:
    """True if ``path`` has the VOC folders ``Annotations/`` and ``ImageSets/``."""
    return (path / "Annotations").is_dir() and (path / "ImageSets").is_dir()


def voc_splits(root: str | Path) -> list[str]:
    """Names of the splits listed in ``root/ImageSets/Main`` (sorted)."""
    folder = Path(root) / "ImageSets" / "Main"
    return sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []


def voc_dataset_classes(root: str | Path) -> tuple[str, ...]:
    """The class list of the whole data set: the sorted names of the objects of every image that a split of
    ``ImageSets/Main`` lists (each annotation read once), as :func:`load_voc` names a split holding them all.
    A split that lacks a class does not change it. Empty when no split lists an object."""
    ids = dict.fromkeys(image_id for split in voc_splits(root) for image_id in read_split(root, split))
    annotations = (parse_voc_xml(Path(root) / "Annotations" / f"{image_id}.xml") for image_id in ids)
    return tuple(sorted({obj.name for annotation in annotations for obj in annotation.objects}))


def _check_layout(root: Path) -> None:
    if not root.exists():
        raise DataError("data set folder not found", path=root)
    if not root.is_dir():
        raise DataError("expected a VOC data set folder, found a file", path=root)
    for folder in ("Annotations", "JPEGImages"):
        if not (root / folder).is_dir():
            raise DataError(f"not a VOC data set: missing the {folder}/ folder", path=root)


def _find_image(root: Path, image_id: str, annotation: VocAnnotation) -> Path:
    images = root / "JPEGImages"
    expected = images / f"{image_id}.jpg"
    candidates = [expected, images / Path(annotation.filename).name]
    candidates += [images / f"{image_id}{suffix}" for suffix in IMAGE_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(f"image file not found (listed in split, annotated in {annotation.path.name})", path=expected)


def _names_found(annotations: Sequence[VocAnnotation], split_file: Path) -> tuple[str, ...]:
    names = sorted({obj.name for annotation in annotations for obj in annotation.objects})
    if not names:
        raise DataError("no objects in any image of this split: cannot derive the class list", path=split_file)
    if BACKGROUND in names:
        where = next(a.path for a in annotations if any(o.name == BACKGROUND for o in a.objects))
        raise DataError(f"the class name {BACKGROUND!r} is reserved for label 0", path=where)
    return tuple(names)


def _record(
    root: Path,
    image_id: int,
    source_id: str,
    annotation: VocAnnotation,
    label_of: dict[str, int],
    check_images: bool,
    counter: WarningCounter,
) -> ImageRecord:
    path = _find_image(root, source_id, annotation)
    if check_images:
        check_image_file(path)
    width, height = annotation.width, annotation.height
    if not width or not height:
        width, height = image_size_from_header(path)
    boxes, labels, ignore, degenerate = [], [], [], []
    for k, obj in enumerate(annotation.objects):
        if obj.name not in label_of:
            hint = unknown_class_hint(obj.name, list(label_of))
            raise DataError(f"object {k}: unknown class {obj.name!r}{hint}", path=annotation.path)
        xmin, ymin, xmax, ymax = obj.xyxy_devkit
        if xmax < xmin or ymax < ymin:
            raise DataError(
                f"object {k} ({obj.name!r}): box with xmax < xmin or ymax < ymin "
                f"({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g})",
                path=annotation.path,
            )
        boxes.append(obj.xyxy)
        labels.append(label_of[obj.name])
        ignore.append(obj.difficult)
        degenerate.append(xmax == xmin or ymax == ymin)
    return make_record(
        image_id, source_id, path, width, height, boxes, labels, ignore, str(annotation.path), counter, degenerate
    )


def load_voc(
    root: str | Path,
    split: str = "trainval",
    classes: Sequence[str] | None = None,
    check_images: bool = True,
) -> DatasetIndex:
    """Index one split of a VOC-layout data set.

    Args:
        root: the folder holding ``Annotations/``, ``JPEGImages/`` and ``ImageSets/Main/``.
        split: the name of a file ``ImageSets/Main/<split>.txt``.
        classes: the class names in label order (a leading ``"background"`` is allowed); an object of another
            class is an error. Default: the sorted names found in this split. Pass the training split's
            ``class_names`` when opening its validation split, so that both use the same labels.
        check_images: check that every image file exists and starts with an image header.

    Raises:
        DataError: naming the file, for a missing folder, split file, annotation or image, a malformed XML
            file, an image that is not one, an unknown class, a box with xmax < xmin, or an empty split.
    """
    root = Path(root)
    _check_layout(root)
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    ids = read_split(root, split)
    counter = WarningCounter()
    unique = list(dict.fromkeys(ids))
    counter.duplicates.extend([str(split_file)] * (len(ids) - len(unique)))
    annotations = [parse_voc_xml(root / "Annotations" / f"{image_id}.xml") for image_id in unique]
    names = normalise_classes(classes) if classes is not None else _names_found(annotations, split_file)
    label_of = {name: label for label, name in enumerate(names, start=1)}
    records = tuple(
        _record(root, image_id, source_id, annotation, label_of, check_images, counter)
        for image_id, (source_id, annotation) in enumerate(zip(unique, annotations))
    )
    return DatasetIndex(
        root=root,
        format="voc",
        split=split,
        class_names=(BACKGROUND, *names),
        category_ids=tuple(range(len(names) + 1)),
        records=records,
        warnings=counter.freeze(),
    )


def _load(path: Path, split: str, classes: Sequence[str] | None = None, check_images: bool = True) -> DatasetIndex:
    return load_voc(path, split, classes=classes, check_images=check_images)


def write_voc(root: Path, indexes: list[DatasetIndex], notes: list[str]) -> None:
    """Every split of ``indexes`` as a VOC data set in ``root``: images in ``JPEGImages/``, one XML file each,
    ``ImageSets/Main/<split>.txt``; a note where the class order or COCO's crowd flags change meaning."""
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    names = OutputNames()
    for index in indexes:
        ids = []
        for record in index.records:
            name = names(record.path)
            copy_image(record.path, root / "JPEGImages" / name)
            stem = Path(name).stem
            (root / "Annotations" / f"{stem}.xml").write_bytes(record_voc_xml(record, name, index.class_names))
            ids.append(stem)
        (root / "ImageSets" / "Main" / f"{index.split}.txt").write_text("".join(f"{i}\n" for i in ids))
    if indexes[0].format == "coco" and any(r.ignore.any() for i in indexes for r in i.records):
        notes.append("COCO iscrowd objects written as VOC difficult objects (both are ignored by evaluation)")
    classes = list(indexes[0].class_names[1:])
    if classes != sorted(classes):
        notes.append(
            f"VOC keeps no class order: the copy's classes read sorted ({', '.join(sorted(classes))}), not in the "
            f"source's order ({', '.join(classes)}); a model trained on the source numbers its classes differently"
        )


def _annotation_file(index: DatasetIndex, record: ImageRecord) -> str:
    return str(index.root / "Annotations" / f"{record.source_id}.xml")


VOC = FormatEntry(
    name="voc",
    paths="VOC root",
    folder_layout="Annotations/ and ImageSets/ (VOC)",
    splits_hint="ImageSets/Main/<split>.txt",
    detect=is_voc_root,
    list_splits=voc_splits,
    load=_load,
    write=write_voc,
    annotation_file=_annotation_file,
    keeps_class_order=False,
)
