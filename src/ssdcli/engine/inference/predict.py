"""``ssd predict``: images, folders, globs and videos in; annotated copies out, in a fresh run folder, and the
detections as a report (:meth:`PredictResult.report`)."""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from ssdcli.data.dataset import open_index
from ssdcli.data.images import read_image_rgb, write_image
from ssdcli.config import PredictConfig
from ssdcli.viz.boxes import draw_detections
from ssdcli.errors import DataError, SsdcliError, UsageError

from ssdcli.engine.events import EvalProgress, EventHandler, Message, ignore_events
from ssdcli.core.detections import Detections
from ssdcli.engine.inference.predictor import Predictor
from ssdcli.data.files import atomic_path, check_output_folder, fresh_run_dir
from ssdcli.data.results_io import results_document

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


@dataclass(frozen=True)
class Sources:
    images: tuple[Path, ...]
    videos: tuple[Path, ...]
    problems: tuple[str, ...]  # one line per source that could not be used


@dataclass(frozen=True)
class DatasetImages:
    """The images of one split of a data set and the ids its results files use: ``image_ids`` [N] aligned with
    ``paths`` (COCO: the JSON's image ids; VOC: the id strings), ``category_ids`` by model label (COCO: the
    category ids; VOC: the label, the 1-based index into the model's classes that ``ssd eval --voc`` reads)."""

    paths: tuple[Path, ...]
    image_ids: tuple[int | str, ...]
    category_ids: tuple[int, ...]


def dataset_images(
    data: str | Path, split: str | None, data_format: str, class_names: Sequence[str]
) -> DatasetImages:
    """The images of ``data``/``split`` (None: "test" of a root, or the split a COCO file holds), with the
    data set's ids for the model's classes ``class_names`` (index 0 the background)."""
    index = open_index(data, split, data_format, class_names[1:], check_images=False, default_split="test")
    records = index.records
    return DatasetImages(
        tuple(r.path for r in records), tuple(r.source_id for r in records), tuple(index.category_ids)
    )


@dataclass
class PredictResult:
    run_dir: Path | None
    images_done: int = 0
    frames_done: int = 0
    failed: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)  # COCO-style records
    per_image: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    categories: dict[int, str] = field(default_factory=dict)  # category id of the results -> class name

    def report(self) -> dict[str, Any]:
        """What ``ssd predict --json`` writes: ``categories``, the class list that the results' category ids
        refer to, ``results``, the COCO results records (each with its ``file_name``; with ``categories`` what
        ``ssd eval --results`` reads), and ``images``, the detections of each image and video frame with class
        names and pixel xyxy boxes."""
        return {**results_document(self.results, self.categories), "images": self.per_image}


def expand_sources(sources: Sequence[str]) -> Sources:
    """Files, folders (their images and videos, sorted) and glob patterns -> image and video paths."""
    images: list[Path] = []
    videos: list[Path] = []
    problems: list[str] = []

    def add(path: Path) -> None:
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            videos.append(path)
        else:
            images.append(path)

    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            if not found:
                problems.append(f"{path}: folder holds no images or videos")
            for item in found:
                add(item)
        elif path.exists():
            add(path)
        elif glob.has_magic(source):
            matched = sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
            if not matched:
                problems.append(f"{source}: pattern matches no files")
            for item in matched:
                add(item)
        else:
            problems.append(f"{path}: file not found")
    return Sources(tuple(images), tuple(videos), tuple(problems))


def _records(
    detections: Detections, image_id: int | str, file_name: str, category_ids: Sequence[int]
) -> list[dict[str, Any]]:
    return [
        {**record, "file_name": file_name}
        for record in detections.to_coco(category_ids, image_id=image_id, rounded=True)
    ]


def _image_json(detections: Detections, file_name: str) -> dict[str, Any]:
    height, width = detections.image_size
    return {
        "file": file_name,
        "width": width,
        "height": height,
        "detections": [
            {"class": name, "label": int(label), "score": round(float(score), 5), "box_xyxy": [round(float(v), 2) for v in box]}
            for box, score, label, name in zip(detections.boxes, detections.scores, detections.labels, detections.names)
        ],
    }


def _unique_name(run_dir: Path, stem: str, suffix: str, taken: set[str]) -> Path:
    """``run_dir/<stem><suffix>``, numbered ``<stem>_<n><suffix>`` while that name is in ``taken``; the name
    is then taken."""
    name, n = stem, 1
    while f"{name}{suffix}" in taken:
        n += 1
        name = f"{stem}_{n}"
    taken.add(f"{name}{suffix}")
    return run_dir / f"{name}{suffix}"


def predict(config: PredictConfig, emit: EventHandler = ignore_events) -> PredictResult:
    """Load the model of ``config`` and predict on its inputs (see :func:`run_predict`); an ``out`` that cannot be
    written stops it before the model is loaded."""
    from ssdcli.engine.device import resolve_device
    from ssdcli.engine.inference.detectors import load_predictor

    if config.out is not None:
        check_output_folder(config.out)
    predictor = load_predictor(
        config.model,
        resolve_device(config.device),
        conf_threshold=config.conf_threshold,
        iou_threshold=config.iou_threshold,
        classes=list(config.classes) if config.classes is not None else None,
    )
    size = predictor.spec.layout.image_size
    if config.img_size is not None and config.img_size != size:
        raise UsageError(f"`img_size` {config.img_size}: the model was trained at {size} px")
    dataset = None
    if config.data is not None:
        dataset = dataset_images(config.data, config.split, config.data_format, predictor.spec.class_names)
    return run_predict(predictor, config.sources, config.out, config.batch_size, emit, dataset)


def run_predict(
    predictor: Predictor,
    sources: Sequence[str],
    out: str | Path | None,
    batch_size: int = 16,
    emit: EventHandler = ignore_events,
    dataset: DatasetImages | None = None,
) -> PredictResult:
    """Predict on every source, or on the images of ``dataset`` (then ``sources`` is empty). ``out=None`` writes
    no pictures (the detections are returned).

    The COCO-style ``results`` carry, besides ``file_name``, the data set's image and category ids with
    ``dataset`` (so ``ssd eval`` scores them against the data set), else ids 0..N-1 in input order and the
    checkpoint's category ids; ``categories`` names the category ids (the model's classes)."""
    if dataset is not None and sources:
        raise UsageError("give images or a data set, not both")
    found = expand_sources(sources) if dataset is None else Sources(dataset.paths, (), ())
    id_of: dict[Path, int | str] = dict(zip(dataset.paths, dataset.image_ids)) if dataset is not None else {}
    for problem in found.problems:
        emit(Message(problem, "warning"))
    category_ids = predictor.spec.category_ids if dataset is None else dataset.category_ids
    names = predictor.spec.class_names
    categories = {int(category_ids[label]): names[label] for label in range(1, len(names))}
    result = PredictResult(None, failed=list(found.problems), categories=categories)
    if not found.images and not found.videos:
        raise DataError("no usable input: " + "; ".join(found.problems) if found.problems else "no input given")
    run_dir = fresh_run_dir(out) if out is not None else None
    result.run_dir = run_dir
    taken: set[str] = set()
    total = len(found.images)
    for start in range(0, total, batch_size):
        paths, rgbs = [], []
        for path in found.images[start : start + batch_size]:
            try:
                rgbs.append(torch.from_numpy(read_image_rgb(path)).permute(2, 0, 1).contiguous())
                paths.append(path)
            except SsdcliError as error:
                result.failed.append(str(error))
                emit(Message(str(error), "warning"))
        for path, rgb, detections in zip(paths, rgbs, predictor.predict_rgb(rgbs)):
            image_id = id_of[path] if dataset is not None else result.images_done
            result.images_done += 1
            result.results.extend(_records(detections, image_id, path.name, category_ids))
            result.per_image.append(_image_json(detections, str(path)))
            if run_dir is not None:
                bgr = cv2.cvtColor(rgb.permute(1, 2, 0).numpy(), cv2.COLOR_RGB2BGR)
                target = _unique_name(run_dir, path.stem, ".jpg", taken)
                write_image(target, _drawn(bgr, detections))
                result.outputs.append(target)
        emit(EvalProgress(min(start + batch_size, total), total))
    for video in found.videos:
        try:
            result.frames_done += _predict_video(predictor, video, run_dir, taken, batch_size, result)
        except SsdcliError as error:
            result.failed.append(str(error))
            emit(Message(str(error), "warning"))
    if result.images_done == 0 and result.frames_done == 0:
        raise DataError(f"every input failed ({len(result.failed)}): {result.failed[0]}")
    return result


def _drawn(image_bgr: np.ndarray, detections: Detections) -> np.ndarray:
    """A copy of ``image_bgr`` [H, W, 3] with ``detections`` drawn and labelled."""
    return draw_detections(image_bgr, detections.boxes, detections.scores, detections.names)


def _predict_video(
    predictor: Predictor, path: Path, run_dir: Path | None, taken: set[str], batch_size: int, result: PredictResult
) -> int:
    """Predict on every frame of the video ``path``; with ``run_dir``, the annotated video is written under a
    temporary name and renamed into place once complete (an interruption leaves no partial file). Returns the
    number of frames."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError("not a readable video", path=path)
    try:
        if run_dir is None:
            return _video_frames(predictor, capture, path, None, batch_size, result)
        target = _unique_name(run_dir, path.stem, ".mp4", taken)
        with atomic_path(target, suffix=".mp4") as temporary:
            frames = _video_frames(predictor, capture, path, temporary, batch_size, result)
        result.outputs.append(target)
        return frames
    finally:
        capture.release()


def _video_frames(
    predictor: Predictor,
    capture: cv2.VideoCapture,
    path: Path,
    out: Path | None,
    batch_size: int,
    result: PredictResult,
) -> int:
    """The frames of an open ``capture`` in batches: detections into ``result.per_image`` and, with ``out``, the
    annotated frames into that video file. DataError naming ``path`` if no frame can be read."""
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    frames = 0
    try:
        while True:
            batch = []
            for _ in range(batch_size):
                ok, frame = capture.read()
                if not ok:
                    break
                batch.append(frame)
            if not batch:
                break
            rgbs = [torch.from_numpy(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).contiguous() for f in batch]
            for frame, detections in zip(batch, predictor.predict_rgb(rgbs)):
                if out is not None:
                    if writer is None:
                        height, width = frame.shape[:2]
                        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                    writer.write(_drawn(frame, detections))
                result.per_image.append({**_image_json(detections, str(path)), "frame": frames})
                frames += 1
    finally:
        if writer is not None:
            writer.release()
    if frames == 0:
        raise DataError("video has no readable frames", path=path)
    return frames

