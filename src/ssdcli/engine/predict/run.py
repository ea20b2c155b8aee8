"""``ssd predict``: images, folders, globs, videos and streams (cameras, rtsp/http URLs) in; annotated copies
out, in a fresh run folder (with YOLO labels and crops if asked, see :mod:`.outputs`), and the detections as a
report (:meth:`PredictResult.report`)."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
import torch

from ssdcli.config import PredictConfig
from ssdcli.core.detections import Detections
from ssdcli.data.dataset import open_index
from ssdcli.data.files import atomic_path, check_output_folder, fresh_run_dir, remove_if_empty, sigint_held_back
from ssdcli.data.images import IMAGE_SUFFIXES, decode_image, write_image
from ssdcli.data.records import DatasetIndex, DataWarnings, quote_files
from ssdcli.data.results_io import results_document
from ssdcli.engine.events import EvalProgress, EventHandler, Message, ignore_events
from ssdcli.engine.inference.detectors import Detector, load_detector
from ssdcli.engine.inference.options import DetectOptions
from ssdcli.engine.inference.tiled import TiledDetector, Tiling
from ssdcli.engine.predict.outputs import RunFolder, RunOutputs
from ssdcli.errors import DataError, SsdcliError, UsageError
from ssdcli.viz.boxes import draw_detections

#: Images are decoded at 1/2, 1/4 or 1/8 of their size while both sides stay at least this many times the
#: network's input size (the network resizes them to its input size anyway).
REDUCED_DECODING_MARGIN = 2
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
STREAM_SCHEMES = ("rtsp", "http", "https")
#: How long a stream URL may take to open, and to deliver a frame, before it counts as dropped.
STREAM_TIMEOUT_MS = 10_000
#: Annotated videos: the first codec this OpenCV build can write (H.264 plays in browsers; MPEG-4 Part 2 is
#: what every build has, played by desktop players).
VIDEO_CODECS = (("avc1", "H.264 (avc1)"), ("mp4v", "MPEG-4 Part 2 (mp4v; most browsers do not play it)"))


@dataclass(frozen=True)
class FrameSelection:
    """Which frames of a video or stream are predicted: every ``stride``-th (the first, then every k-th),
    at most ``max_frames`` of them (None: until the video or stream ends)."""

    stride: int = 1
    max_frames: int | None = None


def stream_source(source: str) -> int | str | None:
    """The camera index of a source that is a non-negative whole number (``"0"``), the URL of an ``rtsp://``,
    ``http://`` or ``https://`` source, else None (a file, folder or pattern)."""
    if source.isascii() and source.isdigit():
        return int(source)
    parts = urlsplit(source)
    return source if parts.scheme.lower() in STREAM_SCHEMES and parts.netloc else None


def stream_stem(source: int | str) -> str:
    """The name of a stream's outputs: ``camera<index>``, or the last part of the URL's path (else its host)."""
    if isinstance(source, int):
        return f"camera{source}"
    parts = urlsplit(source)
    last = Path(parts.path).stem or parts.hostname or "stream"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in last)


@dataclass(frozen=True)
class Sources:
    images: tuple[Path, ...]
    videos: tuple[Path, ...]
    problems: tuple[str, ...]  # one line per source that could not be used
    notes: tuple[str, ...] = ()  # one line per folder whose other files were left out
    streams: tuple[int | str, ...] = ()  # camera indices and URLs


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
    names = tuple(class_names[1:])
    if len(set(names)) == len(names):
        index = open_index(data, split, data_format, names, check_images=False, default_split="test")
        category_ids = tuple(index.category_ids)
    else:  # torchvision's COCO detectors: placeholders ('N/A') fill its unused labels; the data's classes by name
        index = open_index(data, split, data_format, check_images=False, default_split="test")
        category_ids = _category_ids_by_name(index, class_names, data)
    records = index.records
    return DatasetImages(tuple(r.path for r in records), tuple(r.source_id for r in records), category_ids)


#: The category id of a model label the data set has no class for (a placeholder): its detections are dropped.
NO_CATEGORY = -1


def _category_ids_by_name(index: DatasetIndex, class_names: Sequence[str], data: str | Path) -> tuple[int, ...]:
    """The data set's category id of each model label [C] (``NO_CATEGORY`` for names the data lacks); a
    :class:`DataError` naming ``data`` when one of its classes is none of the model's."""
    id_of = {name: int(category) for name, category in zip(index.class_names, index.category_ids)}
    unknown = [name for name in index.class_names[1:] if name not in class_names[1:]]
    if unknown:
        raise DataError(f"class {unknown[0]!r} of the data is not one of the model's classes", path=data)
    return (0, *(id_of.get(name, NO_CATEGORY) for name in class_names[1:]))


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
    images_planned: int = 0  # the images found in the sources (videos apart)
    truncated: list[str] = field(default_factory=list)  # JPEGs cut short, decoded as far as their data goes
    video_codec: str | None = None  # the codec of the annotated videos, in words
    tiling: dict[str, float] | None = None  # window size and overlap where each image was detected window by window
    flip: bool = False  # each image detected with its mirror image (test-time flip)

    def report(self) -> dict[str, Any]:
        """What ``ssd predict --json`` writes: ``categories``, the class list that the results' category ids
        refer to, ``results``, the COCO results records (each with its ``file_name``; with ``categories`` what
        ``ssd eval --results`` reads), and ``images``, the detections of each image and video frame with class
        names and pixel xyxy boxes; ``tiling``, the window size and overlap, where the images were detected
        window by window (``ssd predict --tile``); ``flip``: true where each image was detected with its mirror image
        (``ssd predict --flip``)."""
        tiling = {"tiling": self.tiling} if self.tiling is not None else {}
        flip = {"flip": True} if self.flip else {}
        return {**results_document(self.results, self.categories), "images": self.per_image, **tiling, **flip}


class PredictInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_predict`: ``result`` holds what was done until then (its pictures are written;
    an empty run folder is removed and ``result.run_dir`` is then None)."""

    def __init__(self, result: PredictResult) -> None:
        super().__init__()
        self.result = result


def expand_sources(sources: Sequence[str]) -> Sources:
    """Files, folders (their images and videos, sorted) and glob patterns -> image and video paths; camera
    indices and stream URLs (:func:`stream_source`) apart."""
    images: list[Path] = []
    videos: list[Path] = []
    streams: list[int | str] = []
    problems: list[str] = []
    notes: list[str] = []

    def add(path: Path) -> None:
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            videos.append(path)
        else:
            images.append(path)

    for source in sources:
        path = Path(source)
        stream = stream_source(source)
        if stream is not None:
            streams.append(stream)
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            found = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES]
            if not found:
                problems.append(f"{path}: folder holds no images or videos")
            elif len(found) < len(files):
                others = [str(p) for p in files if p not in found]
                notes.append(f"{path}: {len(others)} file(s) that are neither images nor videos left out ({quote_files(others)})")
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
    return Sources(tuple(images), tuple(videos), tuple(problems), tuple(notes), tuple(streams))


def _records(
    detections: Detections, image_id: int | str, file_name: str, category_ids: Sequence[int]
) -> list[dict[str, Any]]:
    return [
        {**record, "file_name": file_name}
        for record in detections.to_coco(category_ids, image_id=image_id, rounded=True)
    ]


def _with_category(detections: Detections, category_ids: Sequence[int]) -> Detections:
    """``detections`` [K] without those whose label has no category in the data set (``NO_CATEGORY``)."""
    known = np.asarray(category_ids, dtype=np.int64)[detections.labels.astype(np.int64)] != NO_CATEGORY  # [K]
    return detections if known.all() else detections.select(known)


def _image_json(detections: Detections, file_name: str) -> dict[str, Any]:
    assert detections.image_size is not None  # a predictor's detections know their image's size
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


def predict(config: PredictConfig, emit: EventHandler = ignore_events) -> PredictResult:
    """Load the model of ``config`` and predict on its inputs (see :func:`run_predict`); an ``out`` that cannot be
    written stops it before the model is loaded."""
    from ssdcli.engine.device import resolve_device

    if config.out is not None:
        check_output_folder(config.out)
    options = DetectOptions(config.conf_threshold, config.iou_threshold, classes=config.classes, flip=config.flip)
    predictor = load_detector(config.model, device=resolve_device(config.device), options=options)
    size = predictor.spec.layout.image_size
    if config.img_size is not None and config.img_size != size:
        raise UsageError(f"`img_size` {config.img_size}: the model was trained at {size} px")
    if config.tile is not None:
        predictor = TiledDetector(predictor, Tiling(config.tile, config.tile_overlap))
    dataset = None
    if config.data is not None:
        dataset = dataset_images(config.data, config.split, config.data_format, predictor.spec.class_names)
    outputs = RunOutputs(labels=config.save_txt, scores=config.save_conf, crops=config.save_crop)
    frames = FrameSelection(config.vid_stride, config.max_frames)
    return run_predict(predictor, config.sources, config.out, config.batch_size, emit, dataset, outputs, frames)


def run_predict(
    predictor: Detector,
    sources: Sequence[str],
    out: str | Path | None,
    batch_size: int = 16,
    emit: EventHandler = ignore_events,
    dataset: DatasetImages | None = None,
    outputs: RunOutputs = RunOutputs(),
    frames: FrameSelection = FrameSelection(),
) -> PredictResult:
    """Predict on every source, or on the images of ``dataset`` (then ``sources`` is empty). ``out=None`` writes
    no pictures (the detections are returned); ``outputs``: what the run folder holds besides the pictures;
    ``frames``: which frames of each video and stream are predicted.

    The COCO-style ``results`` carry, besides ``file_name``, the data set's image and category ids with
    ``dataset`` (so ``ssd eval`` scores them against the data set), else ids 0..N-1 in input order and the
    checkpoint's category ids; ``categories`` names the category ids (the model's classes)."""
    if dataset is not None and sources:
        raise UsageError("give images or a data set, not both")
    if out is None and outputs != RunOutputs():
        raise UsageError("labels and crops are written into the run folder: give `out`")
    found = expand_sources(sources) if dataset is None else Sources(dataset.paths, (), ())
    id_of: dict[Path, int | str] = dict(zip(dataset.paths, dataset.image_ids)) if dataset is not None else {}
    category_ids = predictor.spec.category_ids if dataset is None else dataset.category_ids
    names = predictor.spec.class_names
    categories = {
        int(category_ids[label]): names[label]
        for label in range(1, len(names))
        if category_ids[label] != NO_CATEGORY
    }
    result = PredictResult(None, failed=list(found.problems), categories=categories, flip=predictor.flip)
    if isinstance(predictor, TiledDetector):
        result.tiling = predictor.tiling.record()
    if not found.images and not found.videos and not found.streams:
        raise DataError("no usable input: " + "; ".join(found.problems) if found.problems else "no input given")
    for problem in (*found.problems, *found.notes):
        emit(Message(problem, "warning"))
    result.images_planned = len(found.images)
    result.run_dir = fresh_run_dir(out) if out is not None else None
    folder = RunFolder(result.run_dir, outputs, names) if result.run_dir is not None else None
    alone = len(found.images) + len(found.videos) + len(found.streams) + len(found.problems) == 1
    try:  # a single input's failure is the error itself, not a warning
        _predict_all(
            predictor, found, result, batch_size, emit, id_of if dataset is not None else None, category_ids,
            folder, frames, warn_failures=not alone,
        )
    except KeyboardInterrupt:
        if remove_if_empty(result.run_dir):
            result.run_dir = None
        raise PredictInterrupted(result) from None
    if result.truncated:
        emit(Message(DataWarnings(truncated_images=tuple(result.truncated)).summary() or "", "warning"))
    if result.images_done == 0 and result.frames_done == 0:
        remove_if_empty(result.run_dir)
        if len(result.failed) == 1:  # not reported as a warning: this error is the one line
            raise DataError(result.failed[0])
        raise DataError(f"every input failed ({len(result.failed)}; each named above)")
    return result


def _predict_all(
    predictor: Detector,
    found: Sources,
    result: PredictResult,
    batch_size: int,
    emit: EventHandler,
    id_of: dict[Path, int | str] | None,
    category_ids: Sequence[int],
    folder: RunFolder | None,
    frames: FrameSelection,
    warn_failures: bool = True,
) -> None:
    """The images, then the videos, then the streams of ``found`` into ``result`` (pictures into ``folder`` if
    given); ``id_of``: the data set's image ids (None: ids 0..N-1 in input order). An input that fails is added
    to ``result.failed``, and reported as a warning if ``warn_failures``."""
    total = len(found.images)
    # Far larger photos are decoded at reduced size: the network sees them at its input size anyway.
    at_least: int | None = REDUCED_DECODING_MARGIN * predictor.spec.layout.image_size
    if isinstance(predictor, TiledDetector):  # windows are cut from the pixels as stored
        at_least = None
    for start in range(0, total, batch_size):
        paths, decoded = [], []
        for path in found.images[start : start + batch_size]:
            try:
                decoded.append(decode_image(path, at_least))
                paths.append(path)
                if decoded[-1].truncated:
                    result.truncated.append(str(path))
            except SsdcliError as error:
                result.failed.append(str(error))
                if warn_failures:
                    emit(Message(str(error), "warning"))
        rgbs = [torch.from_numpy(image.pixels).permute(2, 0, 1).contiguous() for image in decoded]
        for path, image, found_here in zip(paths, decoded, predictor.predict_rgb(rgbs)):
            detections = _with_category(found_here, category_ids)
            stored = detections.rescaled(image.stored_size) if image.stored_size is not None else detections
            image_id = id_of[path] if id_of is not None else result.images_done
            with sigint_held_back():  # an image is in the JSON exactly when its files are written
                if folder is not None:  # the picture at the decoded size
                    bgr = cv2.cvtColor(image.pixels, cv2.COLOR_RGB2BGR)
                    target = folder.picture(path.stem, ".jpg")
                    write_image(target, _drawn(bgr, detections))
                    result.outputs.append(target)
                    stored_size = image.stored_size or (image.height, image.width)
                    folder.save_labels(target.stem, stored, stored_size, path)
                    folder.save_crops(target.stem, detections, bgr)
                result.images_done += 1
                result.results.extend(_records(stored, image_id, path.name, category_ids))
                result.per_image.append(_image_json(stored, str(path)))
        emit(EvalProgress(min(start + batch_size, total), total))
    for video in (*found.videos, *found.streams):
        try:
            _predict_video(predictor, video, folder, batch_size, frames, result, emit)
        except SsdcliError as error:
            result.failed.append(str(error))
            if warn_failures:
                emit(Message(str(error), "warning"))


def _drawn(image_bgr: np.ndarray, detections: Detections) -> np.ndarray:
    """A copy of ``image_bgr`` [H, W, 3] with ``detections`` drawn and labelled."""
    return draw_detections(image_bgr, detections.boxes, detections.scores, detections.names)


def quiet_ffmpeg() -> None:
    """Keep FFmpeg's own log lines (``moov atom not found`` for a broken MP4) off the terminal: OpenCV reads this
    setting when its FFmpeg backend is first used; a file it cannot read is reported here, in one line. A value
    the user set is kept."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


@contextmanager
def quiet_opencv() -> Iterator[None]:
    """OpenCV's own log lines (a camera or codec it cannot open) held back inside the block: what went wrong is
    reported in one line by the caller. The level in force is restored after."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def open_capture(source: Path | int | str) -> cv2.VideoCapture:
    """An open capture of a video file, a camera index or a stream URL (opening and each read wait at most
    :data:`STREAM_TIMEOUT_MS`); DataError naming the source if it cannot be opened."""
    quiet_ffmpeg()
    with quiet_opencv():
        if isinstance(source, str):
            timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
            capture = cv2.VideoCapture(source, cv2.CAP_FFMPEG, timeouts)
        else:
            capture = cv2.VideoCapture(source if isinstance(source, int) else str(source))
    if not capture.isOpened():
        capture.release()
        what = "not a readable video" if isinstance(source, Path) else "cannot be opened"
        raise DataError(what, path=_source_name(source))
    return capture


def _source_name(source: Path | int | str) -> str:
    return f"camera {source}" if isinstance(source, int) else str(source)


def video_writer(path: Path, fps: float, size: tuple[int, int]) -> tuple[cv2.VideoWriter, str]:
    """A writer of an MP4 video at ``path`` of frames ``size`` (width, height), in the first of
    :data:`VIDEO_CODECS` this OpenCV build can write, and that codec in words; DataError naming ``path`` if
    none."""
    with quiet_opencv():
        for fourcc, words in VIDEO_CODECS:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, size)
            if writer.isOpened():
                return writer, words
            writer.release()
    raise DataError("cannot write a video: this OpenCV build has neither H.264 nor MPEG-4 Part 2", path=path)


def _predict_video(
    predictor: Detector,
    source: Path | int | str,
    folder: RunFolder | None,
    batch_size: int,
    frames: FrameSelection,
    result: PredictResult,
    emit: EventHandler,
) -> int:
    """Predict on the frames ``frames`` selects of the video file, camera or stream ``source``; with
    ``folder``, the annotated video is written under a temporary name and renamed into place once complete.

    A video file interrupted leaves no partial file. A stream (camera or URL) has no end of its own: when it
    drops, or on Ctrl-C, the video so far is closed and kept (Ctrl-C then goes on). Returns the number of
    frames predicted."""
    capture = open_capture(source)
    stream = not isinstance(source, Path)
    name = _source_name(source)
    stem = source.stem if isinstance(source, Path) else stream_stem(source)
    try:
        if folder is None:
            reading = _VideoReading(capture, name, stem, stream, frames, None, None)
            count = reading.run(predictor, batch_size, result, emit)
        else:
            target = folder.picture(stem, ".mp4")
            with atomic_path(target, suffix=".mp4") as temporary:
                reading = _VideoReading(capture, name, stem, stream, frames, folder, temporary)
                count = reading.run(predictor, batch_size, result, emit)
            result.outputs.append(target)
    finally:
        capture.release()
    if reading.interrupted:
        raise KeyboardInterrupt
    return count


@dataclass
class _VideoReading:
    """One video or stream read through: ``capture`` open, ``name`` its file or URL, ``stem`` the name of its
    outputs, ``out`` the annotated video's file (None: none written)."""

    capture: cv2.VideoCapture
    name: str
    stem: str
    stream: bool
    frames: FrameSelection
    folder: RunFolder | None
    out: Path | None
    interrupted: bool = False  # a stream stopped by Ctrl-C (its outputs kept)
    _writer: cv2.VideoWriter | None = None

    def _selected(self) -> Iterator[tuple[int, np.ndarray]]:
        """(frame number, frame [H, W, 3] BGR) of every ``stride``-th frame, at most ``max_frames`` of them."""
        index = used = 0
        while self.frames.max_frames is None or used < self.frames.max_frames:
            if index % self.frames.stride:
                ok = self.capture.grab()
                frame = None
            else:
                ok, frame = self.capture.read()
            if not ok:
                return
            if frame is not None:
                yield index, frame
                used += 1
            index += 1

    def run(self, predictor: Detector, batch_size: int, result: PredictResult, emit: EventHandler) -> int:
        """Predict in batches into ``result`` (and the outputs); the number of frames predicted. DataError
        naming the source if no frame can be read."""
        done = 0
        selected = self._selected()
        try:
            while True:
                batch = [item for _, item in zip(range(batch_size), selected)]
                if not batch:
                    break
                rgbs = [torch.from_numpy(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).contiguous() for _, f in batch]
                for (index, frame), detections in zip(batch, predictor.predict_rgb(rgbs)):
                    with sigint_held_back():  # a frame is in the JSON exactly when its outputs are written
                        self._write(frame, index, detections, result)
                        result.per_image.append({**_image_json(detections, self.name), "frame": index})
                        result.frames_done += 1
                        done += 1
        except KeyboardInterrupt:
            if not self.stream or done == 0:
                raise
            self.interrupted = True
        finally:
            if self._writer is not None:
                self._writer.release()
        if done == 0:
            raise DataError("video has no readable frames" if not self.stream else "no frame could be read", path=self.name)
        ended = self.frames.max_frames is None or done < self.frames.max_frames
        if self.stream and ended and not self.interrupted:
            emit(Message(f"{self.name}: the stream ended after {done} frame(s); what was read is kept", "warning"))
        return done

    def _write(self, frame: np.ndarray, index: int, detections: Detections, result: PredictResult) -> None:
        if self.folder is None or self.out is None:
            return
        if self._writer is None:
            height, width = frame.shape[:2]
            self._writer, result.video_codec = video_writer(self.out, self._fps(), (width, height))
        self._writer.write(_drawn(frame, detections))
        stem = f"{self.stem}_{index}"
        self.folder.save_labels(stem, detections, frame.shape[:2], frame)
        self.folder.save_crops(stem, detections, frame)

    def _fps(self) -> float:
        """The annotated video's frame rate: the source's (25 where it says none, or an implausible one), divided
        by the stride."""
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        fps = fps if 0 < fps <= 240 else 25.0
        return fps / self.frames.stride
