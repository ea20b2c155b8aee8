"""Opening a data set by path (format detected) and the PyTorch dataset that loads and transforms its images."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ssdcli.errors import DataError, UsageError

from .coco import coco_splits, find_coco, images_dir_for, load_coco
from .records import DatasetIndex, ImageRecord
from .transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms, make_sample
from .voc import is_voc_root, load_voc

FORMATS = ("auto", "voc", "coco")

# Decode flags: 3-channel colour, and pixel order as stored (annotations of VOC and COCO refer to the stored
# pixels, not to the picture as turned by an EXIF orientation tag).
_IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


def detect_format(path: str | Path) -> str:
    """``"voc"`` for a folder with ``Annotations/`` and ``ImageSets/``; ``"coco"`` for a ``.json`` file or a folder
    with ``annotations/instances_*.json``. Raises :class:`DataError` naming the path otherwise."""
    path = Path(path)
    if not path.exists():
        raise DataError("data set not found", path=path)
    if path.is_file():
        if path.suffix.lower() == ".json":
            return "coco"
        raise DataError("cannot tell the data set format: expected a folder or a COCO .json file", path=path)
    if is_voc_root(path):
        return "voc"
    if coco_splits(path):
        return "coco"
    raise DataError(
        "cannot tell the data set format: expected Annotations/ and ImageSets/ (VOC) "
        "or annotations/instances_<split>.json (COCO)",
        path=path,
    )


def open_index(
    path: str | Path,
    split: str,
    format: str = "auto",
    classes: Sequence[str] | None = None,
    check_images: bool = True,
) -> DatasetIndex:
    """Index one split of a data set.

    Args:
        path: a VOC root, a COCO root (``annotations/instances_<split>.json`` + ``<split>/``), or a COCO
            instances ``.json`` file (then the file is the split, named after it: ``instances_val.json`` is
            ``"val"``; images in ``<root>/<split>/``, ``<root>/images/<split>/`` or the JSON's folder).
        split: the split name (VOC ``ImageSets/Main/<split>.txt``, COCO ``instances_<split>.json``).
        format: ``"auto"`` (detected from the path), ``"voc"`` or ``"coco"``.
        classes: class names in label order; default from the data (see :func:`load_voc`, :func:`load_coco`).
    """
    if format not in FORMATS:
        raise UsageError(f"unknown data set format {format!r} (choose from {', '.join(FORMATS)})")
    path = Path(path)
    if format == "auto":
        format = detect_format(path)
    if format == "voc":
        return load_voc(path, split, classes=classes, check_images=check_images)
    if path.is_file() or path.suffix.lower() == ".json":
        return load_coco(path, images_dir_for(path), classes=classes, check_images=check_images)
    annotations_json, images_dir = find_coco(path, split)
    return load_coco(annotations_json, images_dir, classes=classes, split=split, check_images=check_images)


def read_image_rgb(path: Path, width: int | None = None, height: int | None = None) -> np.ndarray:
    """Decode an image file into RGB uint8 [H, W, 3].

    Raises :class:`DataError` naming the file if it is missing or does not decode, or if ``width``/``height``
    are given and differ from the decoded size (the boxes would not fit the pixels).
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError("image file not found", path=path) from None
    except OSError as error:
        raise DataError(f"cannot read image: {error.strerror}", path=path) from None
    image = cv2.imdecode(data, _IMREAD_FLAGS) if data.size else None
    if image is None:
        raise DataError("cannot decode image (corrupt or not an image)", path=path)
    if width is not None and height is not None and image.shape[:2] != (height, width):
        raise DataError(
            f"image is {image.shape[1]}x{image.shape[0]} pixels but its annotation says {width}x{height}", path=path
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class DetectionDataset(Dataset):
    """Images of a :class:`DatasetIndex`, loaded, augmented (``train``) and resized to S x S.

    ``dataset[i]`` is ``(image, target)``:
        image: float32 [3, S, S], RGB normalised with ``mean``/``std``.
        target: ``boxes`` [G, 4] float32 xyxy normalised to [0, 1] of the S x S image, ``labels`` [G] int64
            (1..C-1), ``ignore`` [G] bool, ``image_id`` int (the record's), ``orig_size`` (h, w) of the file.
    Training augmentation may drop boxes (cropped away); evaluation keeps every box of the record.
    ``transforms`` replaces the default pipeline of :func:`build_transforms` (same calling convention).
    """

    def __init__(
        self,
        index: DatasetIndex,
        image_size: int,
        train: bool,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        zoom_out_max: float = 4.0,
        transforms: Callable[..., Any] | None = None,
        resize: str = "antialias",
    ) -> None:
        self.index = index
        self.image_size = int(image_size)
        self.train = train
        self.transforms = transforms or build_transforms(image_size, train, mean, std, zoom_out_max, resize=resize)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.index.class_names

    @property
    def num_classes(self) -> int:
        return self.index.num_classes

    def __len__(self) -> int:
        return len(self.index.records)

    def record(self, i: int) -> ImageRecord:
        return self.index.records[i]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        record = self.index.records[i]
        image = read_image_rgb(record.path, record.width, record.height)  # [H, W, 3]
        sample = make_sample(image, record.boxes, record.labels, record.ignore)
        pixels, target = self.transforms(*sample)
        height, width = pixels.shape[-2:]
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        boxes = target["boxes"].as_subclass(torch.Tensor).float() / scale  # [G, 4] xyxy normalised
        return pixels, {
            "boxes": boxes.clamp_(0.0, 1.0),
            "labels": target["labels"],
            "ignore": target["ignore"],
            "image_id": record.image_id,
            "orig_size": (record.height, record.width),
        }
