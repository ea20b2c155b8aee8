"""Detections of one image, the one type every command passes around (prediction, evaluation, pictures, the
metrics), and their two interchange forms: COCO results records and VOC devkit rows. Pure numpy, no I/O."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ssdcli.core.boxes import devkit_to_xyxy, xywh_to_xyxy, xyxy_to_devkit, xyxy_to_xywh


class DevkitRow(NamedTuple):
    """One detection as a line of a VOC devkit file ``comp4_det_<split>_<class>.txt`` says it: ``xyxy_devkit``
    in the devkit's 1-based inclusive pixel indices (x1 + 1, y1 + 1, x2, y2 of a 0-based continuous box)."""

    image_id: str
    class_name: str
    score: float
    xyxy_devkit: tuple[float, float, float, float]


@dataclass(frozen=True)
class Detections:
    """Detections of one image: ``boxes`` [K, 4] xyxy in the image's pixels (0-based, continuous), ``scores`` [K],
    ``labels`` [K] in the model's contiguous 1..C-1 (0 is the background).

    ``image_id``: the image's id where one is known (a data set's record id, or its source id in results);
    ``names``: the class names of ``labels`` [K] where known; ``image_size``: (height, width) where known."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    image_id: int | str | None = None
    names: tuple[str, ...] = ()
    image_size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def rescaled(self, image_size: tuple[int, int]) -> Detections:
        """The detections in the pixels of the same image at ``image_size`` (height, width), e.g. the stored
        image of one decoded at reduced size; ``self.image_size`` must be known."""
        if self.image_size is None:
            raise ValueError("rescaled: the detections' image size is unknown")
        (height, width), (new_height, new_width) = self.image_size, image_size
        scale = np.array([new_width / width, new_height / height] * 2, dtype=np.float64)
        boxes = (self.boxes.astype(np.float64) * scale).astype(self.boxes.dtype)
        return dataclasses.replace(self, boxes=boxes, image_size=(int(new_height), int(new_width)))

    def select(self, keep: np.ndarray) -> Detections:
        """The detections where ``keep`` [K] (bool) is true, in order."""
        names = tuple(name for name, kept in zip(self.names, keep) if kept) if self.names else ()
        return dataclasses.replace(
            self, boxes=self.boxes[keep], scores=self.scores[keep], labels=self.labels[keep], names=names
        )

    def to_coco(
        self, category_ids: Sequence[int] | None = None, image_id: int | str | None = None, rounded: bool = False
    ) -> list[dict[str, Any]]:
        """COCO results records ``{image_id, category_id, bbox [x, y, w, h], score}``, one per detection.

        ``category_ids[label]`` is a label's category (default: the label itself); ``image_id`` replaces the
        detections' own. ``rounded``: boxes to 0.01 px and scores to 1e-5, for files people read."""
        image = self.image_id if image_id is None else image_id
        records = []
        for bbox, score, label in zip(self._boxes_as(xyxy_to_xywh), self.scores.tolist(), self.labels.tolist()):
            value = float(score)
            if rounded:
                bbox, value = [round(v, 2) for v in bbox], round(value, 5)
            category = int(label) if category_ids is None else int(category_ids[int(label)])
            records.append({"image_id": image, "category_id": category, "bbox": bbox, "score": value})
        return records

    def to_devkit(self, class_names: Sequence[str], image_id: str | None = None) -> list[DevkitRow]:
        """VOC devkit rows, one per detection: label ``l`` is ``class_names[l - 1]`` (the evaluated classes, the
        background left out), boxes in devkit coordinates; ``image_id`` replaces the detections' own."""
        image = str(self.image_id if image_id is None else image_id)
        labels = self.labels.astype(np.int64)  # [K]
        if labels.size and not (labels.min() >= 1 and labels.max() <= len(class_names)):
            raise ValueError(f"labels must be 1..{len(class_names)} ({', '.join(class_names)}), got {labels.tolist()}")
        return [
            DevkitRow(image, class_names[label - 1], float(score), tuple(box))  # type: ignore[arg-type]
            for box, score, label in zip(self._boxes_as(xyxy_to_devkit), self.scores.tolist(), labels.tolist())
        ]

    def _boxes_as(self, convert: Callable[[np.ndarray], np.ndarray]) -> list[list[float]]:
        """The boxes [K, 4] in another format (a ``core.boxes`` conversion), as Python floats."""
        rows: list[list[float]] = convert(np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)).tolist()
        return rows

    @classmethod
    def from_coco(
        cls, records: Sequence[Mapping[str, Any]], image_id: int | str, labels: Mapping[int, int] | None = None
    ) -> Detections:
        """The detections of ``image_id`` among COCO results ``records`` (in their order); ``labels`` maps a
        category id to the model's label (default: the category id itself)."""
        mine = [r for r in records if r["image_id"] == image_id]
        return cls(
            xywh_to_xyxy(np.array([r["bbox"] for r in mine], dtype=np.float64).reshape(-1, 4)),
            np.array([float(r["score"]) for r in mine], dtype=np.float64),
            np.array([int(r["category_id"]) if labels is None else labels[int(r["category_id"])] for r in mine],
                     dtype=np.int64),  # fmt: skip
            image_id=image_id,
        )

    @classmethod
    def from_devkit(cls, rows: Sequence[DevkitRow], class_names: Sequence[str]) -> list[Detections]:
        """Devkit rows (of any images, each of a class in ``class_names``) as :meth:`from_rows` groups them;
        ``class_names[l - 1]`` becomes label ``l``."""
        label = {name: c + 1 for c, name in enumerate(class_names)}
        return cls.from_rows(
            [row.image_id for row in rows],
            devkit_to_xyxy(np.array([row.xyxy_devkit for row in rows], dtype=np.float64).reshape(-1, 4)),
            np.array([row.score for row in rows], dtype=np.float64),
            np.array([label[row.class_name] for row in rows], dtype=np.int64),
        )

    @classmethod
    def from_rows(
        cls, image_ids: Sequence[int | str], boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray
    ) -> list[Detections]:
        """Detections of several images, one per row (``image_ids`` [N], ``boxes`` [N, 4] xyxy pixels, ``scores``
        [N], ``labels`` [N]), as one :class:`Detections` per run of consecutive rows of one image. Flattening the
        list gives the rows back in their order, which is how the VOC metric ranks equal scores."""
        starts = [k for k in range(len(image_ids)) if k == 0 or image_ids[k] != image_ids[k - 1]]
        bounds = zip(starts, [*starts[1:], len(image_ids)])
        return [cls(boxes[a:b], scores[a:b], labels[a:b], image_id=image_ids[a]) for a, b in bounds]
