"""What ``ssd predict`` writes besides the annotated pictures: YOLO label files with the images they describe
(the run folder is then a YOLO data set), one picture per detection, and the CSV of the boxes.

A run folder with labels::

    RUN/data.yaml                       path: ., predict: images, names (the model's classes, 0-based)
    RUN/images/<name>.<ext>             the input image (a copy of its file) or the video frame (JPEG)
    RUN/labels/<name>.txt               class cx cy w h [score], normalised; class ids in the model's order
    RUN/crops/<class>/<name>_<k>.jpg    detection k (the order of the JSON and the CSV) of that image

Each label file is written before its image, both atomically, so a run that stops part-way leaves a data set
whose every image has its labels.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssdcli.core.detections import Detections
from ssdcli.data.files import atomic_path, write_atomic
from ssdcli.data.formats.writers import yolo_data_yaml, yolo_lines
from ssdcli.data.images import write_image

#: The split name under which ``data.yaml`` lists the predicted images.
PREDICT_SPLIT = "predict"
CSV_COLUMNS = ("image", "frame", "class", "score", "x1", "y1", "x2", "y2")


@dataclass(frozen=True)
class RunOutputs:
    """What a predict run folder holds besides the annotated pictures: ``labels``, YOLO label files with the
    images they describe and a ``data.yaml`` (a data set ``ssd data check`` and ``ssd train`` read); ``scores``,
    each label line ending with the detection's score; ``crops``, one picture per detection by class."""

    labels: bool = False
    scores: bool = False
    crops: bool = False


def _unique_name(folder: Path, stem: str, suffix: str, taken: set[str]) -> Path:
    """``folder/<stem><suffix>``, numbered ``<stem>_<n><suffix>`` while that name is in ``taken``; the name
    is then taken."""
    name, n = stem, 1
    while f"{name}{suffix}" in taken:
        n += 1
        name = f"{stem}_{n}"
    taken.add(f"{name}{suffix}")
    return folder / f"{name}{suffix}"


def folder_name(class_name: str) -> str:
    """``class_name`` as one folder name: path separators and control characters replaced by ``_``."""
    cleaned = re.sub(r"[\x00-\x1f/\\:]", "_", class_name).strip()
    return cleaned if cleaned not in ("", ".", "..") else "_"


@dataclass
class RunFolder:
    """The files of one predict run folder ``root``: annotated pictures (named apart), and what ``outputs`` asks
    for. ``class_names``: the model's classes, index 0 the background."""

    root: Path
    outputs: RunOutputs
    class_names: Sequence[str]
    _pictures: set[str] = field(default_factory=set)
    _labels: set[str] = field(default_factory=set)

    def picture(self, stem: str, suffix: str) -> Path:
        """A new name for an annotated picture or video at the top of the folder."""
        return _unique_name(self.root, stem, suffix, self._pictures)

    def save_labels(
        self, stem: str, detections: Detections, size: tuple[int, int], image: Path | np.ndarray
    ) -> None:
        """With ``outputs.labels``: the label file of ``detections`` (pixels of an image of ``size`` (height,
        width)), then the image beside it: ``image`` is its file (copied as is) or a video frame [H, W, 3] BGR
        (written as JPEG)."""
        if not self.outputs.labels:
            return
        if not self._labels:  # the first: the data set's files (a run with no image done leaves none)
            write_atomic(self.root / "data.yaml", yolo_data_yaml({PREDICT_SPLIT: "images"}, self.class_names[1:]))
            (self.root / "images").mkdir(exist_ok=True)
            (self.root / "labels").mkdir(exist_ok=True)
        label = _unique_name(self.root / "labels", stem, ".txt", self._labels)
        height, width = size
        scores = detections.scores.tolist() if self.outputs.scores else None
        class_ids = (np.asarray(detections.labels) - 1).tolist()
        write_atomic(label, yolo_lines(detections.boxes, class_ids, width, height, scores))
        if not isinstance(image, Path):
            write_image(self.root / "images" / f"{label.stem}.jpg", image)
            return
        with atomic_path(self.root / "images" / f"{label.stem}{image.suffix.lower()}") as temporary:
            shutil.copyfile(image, temporary)

    def save_crops(self, stem: str, detections: Detections, image_bgr: np.ndarray) -> None:
        """With ``outputs.crops``: ``crops/<class>/<stem>_<k>.jpg``, detection k of ``detections`` (pixels of
        ``image_bgr`` [H, W, 3]) cut out of the image; a box with no pixel inside the image is left out."""
        if not self.outputs.crops:
            return
        height, width = image_bgr.shape[:2]
        for k, (box, label) in enumerate(zip(np.asarray(detections.boxes), np.asarray(detections.labels))):
            x1, y1 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
            x2, y2 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
            if x2 <= x1 or y2 <= y1:
                continue
            folder = self.root / "crops" / folder_name(self.class_names[int(label)])
            folder.mkdir(parents=True, exist_ok=True)
            write_image(folder / f"{stem}_{k}.jpg", np.ascontiguousarray(image_bgr[y1:y2, x1:x2]))


def detections_csv(per_image: Sequence[dict[str, Any]]) -> str:
    """The CSV of ``ssd predict --csv``: a header, then one row per box of each image or video frame of
    ``per_image`` (the ``images`` of the JSON report): the image's file, the frame number (empty for an image),
    the class name, the score and the xyxy box in the image's pixels."""
    text = io.StringIO()
    rows = csv.writer(text, lineterminator="\n")
    rows.writerow(CSV_COLUMNS)
    for image in per_image:
        frame = image.get("frame", "")
        for detection in image["detections"]:
            rows.writerow([image["file"], frame, detection["class"], detection["score"], *detection["box_xyxy"]])
    return text.getvalue()
