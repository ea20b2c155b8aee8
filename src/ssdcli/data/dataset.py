"""Opening a data set by path (format detected) and the PyTorch dataset that loads and transforms its images."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ssdcli.config import DEFAULT_RESIZE, DEFAULT_ZOOM_OUT, IMAGENET_MEAN, IMAGENET_STD
from ssdcli.errors import DataError

from . import formats
from .collate import LoadFailure
from .images import decode_image
from .mosaic import MosaicPart, mosaic
from .records import DatasetIndex, ImageRecord
from .sampling import sample_seed, seeded
from .transforms import build_transforms, make_sample


def open_index(
    path: str | Path,
    split: str | None,
    format: str = "auto",
    classes: Sequence[str] | None = None,
    check_images: bool = True,
    default_split: str = "train",
) -> DatasetIndex:
    """Index one split of a data set, in any format of the registry (:data:`ssdcli.data.formats.FORMATS`).

    Args:
        path: a VOC root, a COCO root (``annotations/instances_<split>.json`` + ``<split>/``), or a COCO
            instances ``.json`` file (then the file is the split, named after it: ``instances_val.json`` is
            ``"val"``; images in ``<root>/<split>/``, ``<root>/images/<split>/`` or the JSON's folder), or a YOLO
            data set (``data.yaml`` or ``images/<split>/`` + ``labels/<split>/``).
        split: the split name (VOC ``ImageSets/Main/<split>.txt``, COCO ``instances_<split>.json``, YOLO a key
            of data.yaml or a folder of ``images/``); None: the file's own split for a COCO file, else
            ``default_split``. A COCO file holds one split only: another split name is a :class:`DataError`
            naming the file (it never silently gives its own split).
        format: ``"auto"`` (detected from the path) or the name of a format (``"voc"``, ``"coco"``, ``"yolo"``).
        classes: class names in label order; default from the data (see :func:`load_voc`, :func:`load_coco`).
    """
    path = Path(path)
    entry = formats.resolve_format(path, format)
    own = entry.file_split(path)
    if own is not None:
        check_file_split(path, split, own)
    split = own or (default_split if split is None else split)
    return entry.load(path, split, classes=classes, check_images=check_images)


def is_split_file(path: str | Path) -> bool:
    """True for a file given as the data set that holds one split only (a COCO instances ``.json`` file); False
    for a data set root, and for a YOLO ``data.yaml``, which names its splits."""
    return any(entry.file_split(Path(path)) is not None for entry in formats.FORMATS)


def check_file_split(path: Path, split: str | None, own: str) -> None:
    """A file that holds one split (``own``) is that split; asking it for another is a :class:`DataError`."""
    if split is not None and split != own:
        raise DataError(
            f"a COCO annotation file holds one split ({own!r}), not {split!r}: give the file of split {split!r} "
            f"or the data set root (annotations/instances_{split}.json)",
            path=path,
        )


def read_sized_image(path: Path, width: int, height: int) -> np.ndarray:
    """[H, W, 3] uint8 RGB pixels of an indexed image (:func:`ssdcli.data.images.decode_image`).

    Raises :class:`DataError` naming the file if it does not decode or its size is not ``width`` x ``height``
    (the index was verified before training, so this means the file changed since).
    """
    image = decode_image(path).pixels
    if image.shape[:2] != (height, width):
        raise DataError(
            f"image is {image.shape[1]}x{image.shape[0]} pixels but its annotation says {width}x{height}",
            path=path,
        )
    return image


class DetectionDataset(Dataset[tuple[torch.Tensor, dict[str, Any]] | LoadFailure]):
    """Images of a :class:`DatasetIndex`, loaded, augmented (``train``) and resized to S x S.

    ``dataset[i]`` is ``(image, target)``:
        image: float32 [3, S, S], RGB normalised with ``mean``/``std``.
        target: ``boxes`` [G, 4] float32 xyxy normalised to [0, 1] of the S x S image, ``labels`` [G] int64
            (1..C-1), ``ignore`` [G] bool, ``image_id`` int (the record's), ``orig_size`` (h, w) of the file.
    Training augmentation may drop boxes (cropped away); evaluation keeps every box of the record.
    ``transforms`` replaces the default pipeline of :func:`build_transforms` (same calling convention).
    ``return_failures=True`` returns a :class:`LoadFailure` for an image that cannot be loaded instead of
    raising :class:`DataError`, for ``DataLoader`` workers (see :func:`checked_batches`).
    ``seed``: when given, each sample's augmentation is seeded from (seed, :attr:`epoch`, index) (see
    :mod:`ssdcli.data.sampling`), so it does not depend on workers, and the caller's random generators keep their
    states; call :meth:`set_epoch` before each epoch.
    """

    def __init__(
        self,
        index: DatasetIndex,
        image_size: int,
        train: bool,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        zoom_out_max: float = DEFAULT_ZOOM_OUT,
        transforms: Callable[..., Any] | None = None,
        return_failures: bool = False,
        resize: str = DEFAULT_RESIZE,
        seed: int | None = None,
        mosaic: float = 0.0,
        mosaic_transforms: Callable[..., Any] | None = None,
    ) -> None:
        if not 0.0 <= mosaic <= 1.0:
            raise ValueError(f"mosaic: expected a probability in [0, 1], got {mosaic}")
        self.seed = seed
        self.mosaic = mosaic if train else 0.0
        self.mosaic_transforms = mosaic_transforms or build_transforms(
            image_size, True, mean, std, zoom_out_max=1.0, iou_crop=False
        )
        self.epoch = 0
        self.index = index
        self.return_failures = return_failures
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

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose augmentation the next samples draw (with ``seed``); before the loader's iterator."""
        self.epoch = epoch

    def record(self, i: int) -> ImageRecord:
        return self.index.records[i]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]] | LoadFailure:
        """Sample ``i``; with ``seed``, drawn from its own seed, the global random generators left as they were."""
        with seeded(sample_seed(self.seed, self.epoch, i)) if self.seed is not None else nullcontext():
            return self._load(i)

    def _load(self, i: int) -> tuple[torch.Tensor, dict[str, Any]] | LoadFailure:
        record = self.index.records[i]
        try:
            image = read_sized_image(record.path, record.width, record.height)  # [H, W, 3]
            if self.mosaic and float(torch.rand(())) < self.mosaic:
                pixels, target = self.mosaic_transforms(*self._mosaic_sample(record, image))
            else:
                pixels, target = self.transforms(*make_sample(image, record.boxes, record.labels, record.ignore))
        except DataError as error:
            if not self.return_failures:
                raise
            return LoadFailure(error.message, error.path)
        height, width = pixels.shape[-2:]  # S x S
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        boxes = target["boxes"].as_subclass(torch.Tensor).float() / scale  # [G, 4] xyxy normalised
        return pixels, {
            "boxes": boxes.clamp_(0.0, 1.0),
            "labels": target["labels"],
            "ignore": target["ignore"],
            "image_id": record.image_id,
            "orig_size": (record.height, record.width),
        }

    def _mosaic_sample(self, record: ImageRecord, image: np.ndarray) -> tuple[Any, dict[str, torch.Tensor]]:
        """Record ``record`` (its image decoded) with three others drawn at random, as a mosaic (data/mosaic.py)."""
        others = [self.index.records[int(j)] for j in torch.randint(len(self.index.records), (3,))]
        offset = tuple(int(v) for v in torch.randint(self.image_size + 1, (2,)))
        parts = [MosaicPart(image, record.boxes, record.labels, record.ignore)]
        parts += [
            MosaicPart(read_sized_image(other.path, other.width, other.height), other.boxes, other.labels, other.ignore)
            for other in others
        ]
        window, boxes, labels, ignore = mosaic(parts, self.image_size, (offset[0], offset[1]))
        return make_sample(window, boxes, labels, ignore)
