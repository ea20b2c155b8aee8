"""``ssd encode --data``: anchor coverage statistics over a whole data set, from the annotations alone.

Every image is resized to the layout's square input, so GT boxes are normalised by the image's own width and
height. GTs are padded to [N, G, 4] (class -1 = padding, also used for ignored GTs) and matched in chunks of
images with the core engine's batched :func:`match`; no image is decoded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ssdcli.core.anchors import default_boxes
from ssdcli.core.boxes import cxcywh_to_xyxy, pairwise_iou
from ssdcli.core.layouts import AnchorLayout
from ssdcli.core.matching import match
from ssdcli.engine.encode.layouts import NamedLayout
from ssdcli.engine.encode.sizes import SIZE_BUCKETS, size_bucket_index
from ssdcli.engine.events import EvalProgress, EventHandler, ignore_events
from ssdcli.errors import DataError

#: Largest [images, GTs, default boxes] block matched at once (elements); bounds memory to a few hundred MB.
CHUNK_ELEMENTS = 1 << 23
#: At most this many images per chunk.
CHUNK_IMAGES = 64


class _Record(Protocol):
    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def boxes(self) -> np.ndarray: ...  # [G, 4] float32 xyxy pixels

    @property
    def labels(self) -> np.ndarray: ...  # [G] int64 1..C-1

    @property
    def ignore(self) -> np.ndarray: ...  # [G] bool


class _Index(Protocol):
    @property
    def class_names(self) -> tuple[str, ...]: ...

    @property
    def records(self) -> Sequence[_Record]: ...


@dataclass(frozen=True)
class GtSet:
    """The ground truth of a data set as padded tensors.

    boxes: [N, G, 4] float32 xyxy normalised by each image's width and height.
    labels: [N, G] int64, 1..C-1 for training targets, -1 for padding and ignored GTs.
    counts: [N] int64 GTs per image, ignored ones included (they occupy columns 0..counts-1).
    class_names: index 0 is the background. ignored: GTs flagged difficult/crowd (left out of every statistic).
    """

    source: str
    split: str | None
    class_names: tuple[str, ...]
    boxes: torch.Tensor
    labels: torch.Tensor
    counts: torch.Tensor
    ignored: int

    @property
    def num_images(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def valid(self) -> torch.Tensor:
        """[N, G] bool: the training-target GTs."""
        return self.labels >= 1

    @property
    def num_gts(self) -> int:
        return int(self.valid.sum())

    def relative_sides(self) -> torch.Tensor:
        """[M] sqrt(w * h) of each training-target GT as a share of its image's side: every image is resized to the
        square input, so on an S px input the GT measures ``S * share`` px (the size buckets' measure)."""
        wh = (self.boxes[..., 2:] - self.boxes[..., :2])[self.valid]  # [M, 2]
        return (wh[:, 0] * wh[:, 1]).clamp(min=0).sqrt()


def gt_set_from_index(index: _Index, source: str = "", split: str | None = None) -> GtSet:
    """Pad the records of a :class:`~ssdcli.data.records.DatasetIndex` into a :class:`GtSet`."""
    records = list(index.records)
    if not records:
        raise DataError("the data set has no images", path=source or None)
    counts = [int(r.labels.shape[0]) for r in records]
    g_max = max(counts, default=0)
    boxes = np.zeros((len(records), g_max, 4), dtype=np.float32)  # [N, G, 4]
    labels = np.full((len(records), g_max), -1, dtype=np.int64)  # [N, G]
    ignored = 0
    for n, (record, count) in enumerate(zip(records, counts)):
        if count == 0:
            continue
        scale = np.array([record.width, record.height] * 2, dtype=np.float32)
        boxes[n, :count] = np.asarray(record.boxes, dtype=np.float32).reshape(-1, 4) / scale
        ignore = np.asarray(record.ignore, dtype=bool).reshape(-1)
        labels[n, :count] = np.where(ignore, -1, np.asarray(record.labels, dtype=np.int64))
        ignored += int(ignore.sum())
    return GtSet(
        source=source,
        split=split,
        class_names=tuple(index.class_names),
        boxes=torch.from_numpy(boxes),
        labels=torch.from_numpy(labels),
        counts=torch.tensor(counts, dtype=torch.int64),
        ignored=ignored,
    )


def load_gt_set(path: str | Path, split: str | None = None, data_format: str = "auto") -> GtSet:
    """Open a split of a VOC or COCO data set (``open_index``; ``split`` None: "train", or the split of a COCO
    file) and pad its boxes into a :class:`GtSet`."""
    from ssdcli.data.dataset import open_index

    index = open_index(Path(path), split, data_format, check_images=False)  # boxes and sizes only
    return gt_set_from_index(index, str(path), index.split)


def image_chunks(gts: GtSet, num_anchors: int) -> Iterator[tuple[torch.Tensor, int]]:
    """Chunks of images to match at once: (image indices [b], GT columns g).

    Images go in order of GT count and each chunk is cut to its own largest count, so little padding is matched;
    a chunk holds at most CHUNK_IMAGES images and CHUNK_ELEMENTS elements of [b, g, A].
    """
    order = torch.argsort(gts.counts, stable=True)  # [N]
    total, start = len(order), 0
    while start < total:
        end = min(start + CHUNK_IMAGES, total)
        widest = max(int(gts.counts[order[end - 1]]), 1)
        end = min(end, start + max(1, CHUNK_ELEMENTS // (widest * num_anchors)))
        chunk = order[start:end]
        yield chunk, int(gts.counts[chunk].max())
        start = end


def best_iou_nearest_cells(boxes: torch.Tensor, layout: AnchorLayout) -> torch.Tensor:
    """[M] best IoU of each box [M, 4] (xyxy normalised) with any default box of ``layout``.

    Without comparing every box with every default box: within a layer, all default boxes of one shape sit
    on a regular grid of centres, and their overlap with a box only shrinks as the centre moves away along x or y
    (the intersection is a product of a width and a height term, each non-increasing in the centre distance; IoU
    grows with the intersection). So the best default box of each shape lies in the cell whose centre is nearest
    to the box centre in x and in y; only the boxes of that cell are compared, per layer, with the core engine's
    IoU on the core engine's default boxes. The result equals the maximum over all default boxes up to float
    rounding (cells that tie exactly, e.g. several default boxes wholly inside a large box, may differ in the
    last bit).
    """
    anchors = default_boxes(layout, dtype=boxes.dtype)  # [A, 4] cxcywh
    anchors_xyxy = cxcywh_to_xyxy(anchors)  # [A, 4]
    centre = 0.5 * (boxes[:, :2] + boxes[:, 2:])  # [M, 2]
    best = torch.full((boxes.shape[0],), -1.0, dtype=boxes.dtype)
    start = 0
    for f, per_cell, count in zip(layout.feature_maps, layout.boxes_per_cell, layout.anchors_per_layer):
        grid = anchors[start + torch.arange(f) * per_cell, 0]  # [f] cell centres (the same along x and y)
        nearest = torch.bucketize(centre, 0.5 * (grid[1:] + grid[:-1]))  # [M, 2] (col, row) of the nearest cell
        cell = nearest[:, 1] * f + nearest[:, 0]  # [M]
        index = start + cell[:, None] * per_cell + torch.arange(per_cell)  # [M, k]
        iou = pairwise_iou(boxes[:, None, :], anchors_xyxy[index])  # [M, 1, k]
        best = torch.maximum(best, iou.amax(dim=(1, 2)))
        start += count
    return best


def gt_best_iou(gts: GtSet, layout: AnchorLayout) -> torch.Tensor:
    """[M] best IoU of every training-target GT of ``gts`` (in ``gts.valid`` order) with any default box."""
    return best_iou_nearest_cells(gts.boxes[gts.valid], layout)


def coverage_of(best_iou: torch.Tensor, threshold: float) -> tuple[float, float]:
    """(share of GTs with a default box of IoU > threshold, mean best IoU) from best IoUs [M]."""
    if best_iou.numel() == 0:
        return 0.0, 0.0
    return float((best_iou > threshold).double().mean()), float(best_iou.double().mean())


@dataclass(frozen=True)
class GroupStats:
    """GTs of one size bucket or class: how many, how many have no default box above the threshold."""

    name: str
    gts: int
    below_threshold: int
    mean_best_iou: float

    @property
    def share_below(self) -> float:
        return self.below_threshold / self.gts if self.gts else 0.0


@dataclass(frozen=True)
class LayerStats:
    """One feature map: its default boxes, the positives it holds over the set, and the GTs whose highest-IoU
    default box lies on it."""

    layer: int
    feature_map: int
    anchors: int
    matches: int
    best_layer_gts: int


@dataclass(frozen=True)
class CoverageReport:
    """Anchor coverage of a data set under one layout, threshold and matching rule.

    below_threshold: GTs with no default box of IoU > threshold (the reference rule leaves them unmatched);
    unmatched: GTs without any default box under the rule used. iou_histogram: GT counts per best-IoU bin of
    width 0.1 on [0, 1].
    """

    source: str
    split: str | None
    layout_name: str
    layout: AnchorLayout
    threshold: float
    best_anchor: bool
    images: int
    gts: int
    ignored: int
    below_threshold: int
    unmatched: int
    mean_best_iou: float
    positives_mean: float
    positives_min: int
    positives_max: int
    by_size: tuple[GroupStats, ...]
    by_class: tuple[GroupStats, ...]
    layers: tuple[LayerStats, ...]
    iou_histogram: tuple[int, ...]
    seconds: float

    @property
    def coverage(self) -> float:
        """Share of GTs with a default box of IoU > threshold."""
        return 1.0 - self.below_threshold / self.gts if self.gts else 0.0


def _groups(names: Sequence[str], group: torch.Tensor, best: torch.Tensor, threshold: float) -> tuple[GroupStats, ...]:
    """Per-group statistics of GTs with group index ``group`` [M] and best IoU ``best`` [M]."""
    k = len(names)
    gts = torch.bincount(group, minlength=k)
    below = torch.bincount(group[best <= threshold], minlength=k)
    iou_sum = torch.zeros(k, dtype=torch.float64).index_add_(0, group, best.double())
    return tuple(
        GroupStats(name, int(n), int(b), float(s / n) if n else 0.0)
        for name, n, b, s in zip(names, gts.tolist(), below.tolist(), iou_sum.tolist())
    )


def dataset_coverage(
    gts: GtSet,
    layout: NamedLayout,
    threshold: float = 0.5,
    best_anchor: bool = True,
    on_event: EventHandler = ignore_events,
) -> CoverageReport:
    """Match every image of ``gts`` to the default boxes of ``layout`` and gather coverage statistics."""
    started = time.perf_counter()
    if gts.num_gts == 0:
        raise DataError("the data set has no objects to match (all ignored or none annotated)", path=gts.source or None)
    spec = layout.layout
    anchors = default_boxes(spec)  # [A, 4] cxcywh
    layer_of = spec.layer_index()  # [A]
    n, g_all = gts.labels.shape
    best = torch.full((n, g_all), -1.0)  # [N, G] best IoU per GT
    best_layer = torch.zeros((n, g_all), dtype=torch.int64)  # [N, G] layer of that default box
    matches = torch.zeros((n, g_all), dtype=torch.int64)  # [N, G] default boxes assigned per GT
    positives = torch.zeros(n, dtype=torch.int64)  # [N]
    per_layer = torch.zeros(spec.num_layers, dtype=torch.int64)  # [L]
    done = 0
    for chunk, g in image_chunks(gts, anchors.shape[0]):
        labels = gts.labels[chunk, :g]  # [b, g]
        result = match(gts.boxes[chunk, :g], labels, anchors, threshold, best_anchor, with_iou=True)
        assert result.iou is not None  # with_iou=True
        values, where = result.iou.max(dim=2)  # [b, g]
        best[chunk, :g], best_layer[chunk, :g] = values, layer_of[where]
        assigned = result.gt_index  # [b, A]
        counts = torch.zeros(len(chunk), g + 1, dtype=torch.int64).scatter_add_(1, assigned + 1, torch.ones_like(assigned))
        matches[chunk, :g] = counts[:, 1:]
        positive = assigned >= 0
        positives[chunk] = positive.sum(dim=1)
        per_layer += torch.bincount(layer_of.expand_as(assigned)[positive], minlength=spec.num_layers)
        done += len(chunk)
        on_event(EvalProgress(done, n))
    valid = gts.valid
    best_v, matches_v, labels_v = best[valid], matches[valid], gts.labels[valid]  # [M]
    side = gts.relative_sides() * spec.image_size  # [M] px at the input
    best_layers = torch.bincount(best_layer[valid], minlength=spec.num_layers)
    histogram = torch.bincount((best_v.clamp(0, 1) * 10).long().clamp(max=9), minlength=10)
    return CoverageReport(
        source=gts.source,
        split=gts.split,
        layout_name=layout.name,
        layout=spec,
        threshold=threshold,
        best_anchor=best_anchor,
        images=n,
        gts=int(valid.sum()),
        ignored=gts.ignored,
        below_threshold=int((best_v <= threshold).sum()),
        unmatched=int((matches_v == 0).sum()),
        mean_best_iou=float(best_v.double().mean()),
        positives_mean=float(positives.double().mean()),
        positives_min=int(positives.min()),
        positives_max=int(positives.max()),
        by_size=_groups(SIZE_BUCKETS, size_bucket_index(side), best_v, threshold),
        by_class=_groups(gts.class_names[1:], labels_v - 1, best_v, threshold),
        layers=tuple(
            LayerStats(k, f, a, int(m), int(b))
            for k, (f, a, m, b) in enumerate(
                zip(spec.feature_maps, spec.anchors_per_layer, per_layer.tolist(), best_layers.tolist())
            )
        ),
        iou_histogram=tuple(int(c) for c in histogram),
        seconds=time.perf_counter() - started,
    )
