"""Detections of one image, the one type every command passes around (prediction, evaluation, pictures), and
their COCO results form."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


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
        for box, score, label in zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist()):
            x1, y1, x2, y2 = (float(v) for v in box)
            bbox = [x1, y1, x2 - x1, y2 - y1]
            value = float(score)
            if rounded:
                bbox, value = [round(v, 2) for v in bbox], round(value, 5)
            category = int(label) if category_ids is None else int(category_ids[int(label)])
            records.append({"image_id": image, "category_id": category, "bbox": bbox, "score": value})
        return records

    @classmethod
    def from_coco(
        cls, records: Sequence[Mapping[str, Any]], image_id: int | str, labels: Mapping[int, int] | None = None
    ) -> Detections:
        """The detections of ``image_id`` among COCO results ``records`` (in their order); ``labels`` maps a
        category id to the model's label (default: the category id itself)."""
        mine = [r for r in records if r["image_id"] == image_id]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in mine)], dtype=np.float64)
        return cls(
            boxes.reshape(-1, 4),
            np.array([float(r["score"]) for r in mine], dtype=np.float64),
            np.array([int(r["category_id"]) if labels is None else labels[int(r["category_id"])] for r in mine],
                     dtype=np.int64),  # fmt: skip
            image_id=image_id,
        )
