"""Batching samples of :class:`DetectionDataset` into padded tensors for the batched matcher (DESIGN.md 1.3)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from ssdcli.errors import DataError

PADDING = -1


@dataclass(frozen=True)
class LoadFailure:
    """A sample or batch that could not be loaded, passed on as data instead of raised.

    A ``DataLoader`` worker that raises hands the main process a multi-line "Caught ... in DataLoader worker
    process" text; a :class:`LoadFailure` crosses the process boundary intact, and :func:`checked_batches`
    raises it in the main process as the one-line :class:`DataError` it was.
    """

    message: str
    path: str | None = None


def checked_batches(batches: Iterable[DetectionBatch | LoadFailure]) -> Iterator[DetectionBatch]:
    """The batches of a loader whose dataset returns failures; :class:`DataError` at the first failure."""
    for batch in batches:
        if isinstance(batch, LoadFailure):
            raise DataError(batch.message, path=batch.path)
        yield batch


@dataclass(frozen=True)
class DetectionBatch:
    """A batch of B images with their ground truth padded to Gmax objects (Gmax >= 1).

    images: [B, 3, S, S] float32, normalised.
    boxes: [B, Gmax, 4] float32 xyxy normalised to [0, 1]; zeros for padding.
    classes: [B, Gmax] int64, the matcher's input: labels 1..C-1, -1 for padding AND for ignored objects
        (VOC difficult, COCO crowd), which are thereby no training targets (DESIGN.md 1.3, point 5).
    image_ids: [B] int64, the records' ``image_id``.
    orig_sizes: [B, 2] int64, (h, w) of the image files.
    labels: [B, Gmax] int64, every object's label, ignored ones included; -1 for padding only (for evaluation).
    ignore: [B, Gmax] bool, True for ignored objects; False for padding.
    """

    images: Tensor
    boxes: Tensor
    classes: Tensor
    image_ids: Tensor
    orig_sizes: Tensor
    labels: Tensor
    ignore: Tensor

    @property
    def valid(self) -> Tensor:
        """[B, Gmax] bool, True for real objects (ignored or not), False for padding."""
        return self.labels != PADDING

    def to(self, device: torch.device | str, non_blocking: bool = False) -> DetectionBatch:
        moved = {f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)}
        return DetectionBatch(**moved)

    def pin_memory(self) -> DetectionBatch:
        """Called by ``DataLoader(pin_memory=True)``."""
        return DetectionBatch(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _target_problem(sample: tuple[Tensor, dict[str, Any]] | LoadFailure) -> str | None:
    """What is wrong with a sample's target (boxes [G, 4] xyxy normalised, labels [G]), None if nothing."""
    if isinstance(sample, LoadFailure):
        return None
    boxes, labels = sample[1]["boxes"], sample[1]["labels"]
    name = f"image {sample[1]['image_id']}"
    if not bool(torch.isfinite(boxes).all()):
        return f"{name}: a box with a non-finite coordinate after augmentation"
    if not bool(((boxes >= 0) & (boxes <= 1)).all()):
        return f"{name}: a box outside the image after augmentation"
    if not bool(((boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])).all()):
        return f"{name}: a box with x2 < x1 or y2 < y1 after augmentation"
    if bool((labels < 1).any()):
        return f"{name}: an object with label {int(labels.min())} (expected 1 or more; 0 is the background)"
    return None


def collate_detections(batch: Sequence[tuple[Tensor, dict[str, Any]] | LoadFailure]) -> DetectionBatch | LoadFailure:
    """Stack ``(image, target)`` samples of :class:`DetectionDataset`; pad objects to the batch's largest count.

    A batch holding a :class:`LoadFailure` is that failure (the first one). This is where training data is checked
    (in the loader's workers): boxes finite, ordered and inside [0, 1], labels at least 1; a sample that is not
    is a failure naming its image. The training step's matching and loss then skip their own input checks.
    """
    if not batch:
        raise ValueError("batch: expected at least one sample, got none")
    failures = [sample for sample in batch if isinstance(sample, LoadFailure)]
    failures += [LoadFailure(problem) for problem in map(_target_problem, batch) if problem is not None]
    if failures:
        return failures[0]
    samples = [sample for sample in batch if not isinstance(sample, LoadFailure)]
    images = torch.stack([image for image, _ in samples])  # [B, 3, S, S]
    size = len(samples)
    most = max(1, max(int(target["labels"].shape[0]) for _, target in samples))
    boxes = torch.zeros(size, most, 4, dtype=torch.float32)
    labels = torch.full((size, most), PADDING, dtype=torch.int64)
    ignore = torch.zeros(size, most, dtype=torch.bool)
    for b, (_, target) in enumerate(samples):
        count = int(target["labels"].shape[0])
        boxes[b, :count] = target["boxes"]
        labels[b, :count] = target["labels"]
        ignore[b, :count] = target["ignore"]
    classes = labels.masked_fill(ignore, PADDING)  # [B, Gmax]
    image_ids = torch.tensor([int(target["image_id"]) for _, target in samples], dtype=torch.int64)
    orig_sizes = torch.tensor([tuple(target["orig_size"]) for _, target in samples], dtype=torch.int64)  # [B, 2]
    return DetectionBatch(images, boxes, classes, image_ids, orig_sizes, labels, ignore)
