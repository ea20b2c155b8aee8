"""The built-in synthetic detection data set: coloured shapes on textured backgrounds, in VOC or COCO layout.

Three classes (circle, square, triangle) that only their shape tells apart: every object's colour is drawn
from the same distribution whatever its class. Each image holds 1 to 4 objects whose side is 15-45 % of the
image side, wholly inside the image, overlapping little (at most 25 % of the smaller box), on a smooth random
colour field with stripes and pixel noise. Shapes are drawn anti-aliased with a little noise of their own.
Each box is the tight box of the pixels its shape changed (xyxy pixels, 0-based continuous).

Everything follows from the seed: image i is drawn from the random stream (seed, i), so a data set of more
images starts with the same images, and the split of the images into train/val/test is drawn from the seed.
Layouts written (``ROOT`` is the output folder):

    voc:  ROOT/JPEGImages/<id>.jpg, ROOT/Annotations/<id>.xml,
          ROOT/ImageSets/Main/{train,val,trainval,test}.txt
    coco: ROOT/{train,val,test}/<id>.jpg, ROOT/annotations/instances_{train,val,test}.json
          (category ids 1, 2, 3 = circle, square, triangle)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ssdcli.errors import DataError, UsageError

from .formats.writers import coco_annotations, coco_image, voc_xml
from .staging import write_folder

SYNTH_CLASSES: tuple[str, ...] = ("circle", "square", "triangle")
SYNTH_FORMATS = ("voc", "coco")

DEFAULT_IMAGE_SIZE = 160
DEFAULT_IMAGES = 300
MIN_IMAGE_SIZE = 32
SPLIT_FRACTIONS = {"val": 0.15, "test": 0.15}  # the rest is train

# Scene parameters (fractions of the image side unless noted).
OBJECTS_PER_IMAGE = (1, 4)
OBJECT_SIDE = (0.15, 0.45)
MAX_OVERLAP = 0.25  # intersection / area of the smaller box
MAX_ROTATION_DEG = 15.0  # squares and triangles
MIN_COLOUR_DISTANCE = 90.0  # RGB distance between an object's colour and the background under it
PLACEMENT_TRIES = 50
JPEG_QUALITY = 95
_SUBPIXEL_BITS = 4  # cv2.fillPoly vertex precision: 1/16 px


@dataclass(frozen=True)
class Scene:
    """One generated image.

    image: [H, W, 3] uint8 RGB.
    background: [H, W, 3] uint8 RGB, the image before the shapes were drawn.
    boxes: [G, 4] float32 xyxy pixels, 0-based continuous, tight around the pixels each shape changed.
    labels: [G] int64, 1..3 (label k is ``SYNTH_CLASSES[k - 1]``).
    """

    image: np.ndarray
    background: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class SynthResult:
    """What :func:`write_synth` wrote. ``split_sizes`` maps each split to its number of images."""

    root: Path
    format: str
    image_size: int
    class_names: tuple[str, ...]
    split_sizes: dict[str, int]
    images: int
    objects_per_class: tuple[int, ...]

    @property
    def objects(self) -> int:
        return sum(self.objects_per_class)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random colour field + faint stripes + pixel noise, float32 [size, size, 3] in 0..255."""
    base = rng.uniform(40.0, 215.0, size=3).astype(np.float32)
    coarse = rng.standard_normal(size=(4, 4, 3), dtype=np.float32)
    field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC) * np.float32(rng.uniform(15.0, 35.0))
    angle, period = rng.uniform(0.0, np.pi), rng.uniform(6.0, 20.0)
    ramp = np.arange(size, dtype=np.float32) * np.float32(2 * np.pi / period)
    stripes = np.sin(ramp[None, :] * np.float32(np.cos(angle)) + ramp[:, None] * np.float32(np.sin(angle)))
    amplitude = rng.uniform(0.0, 12.0, size=3).astype(np.float32)
    noise = rng.standard_normal(size=(size, size, 3), dtype=np.float32) * np.float32(rng.uniform(3.0, 10.0))
    texture: np.ndarray = base + field + stripes[..., None] * amplitude + noise
    return texture


def _outline(rng: np.random.Generator, label: int, side: float) -> np.ndarray:
    """Vertices [V, 2] (x, y) of a shape of the given class, centred on (0, 0), ``side`` px across."""
    if label == 1:  # circle
        t = np.linspace(0.0, 2 * np.pi, 48, endpoint=False)
        circle: np.ndarray = 0.5 * side * np.stack([np.cos(t), np.sin(t)], axis=1)
        return circle
    if label == 2:  # square
        points = 0.5 * side * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float)
    else:  # triangle, equilateral, pointing up or down
        height = side * np.sqrt(3.0) / 2.0
        points = np.array([[0.0, -2 * height / 3], [side / 2, height / 3], [-side / 2, height / 3]])
        if rng.random() < 0.5:
            points[:, 1] *= -1
    theta = np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    rotated: np.ndarray = points @ rotation.T
    return rotated


def _overlaps(box: np.ndarray, placed: list[np.ndarray]) -> bool:
    for other in placed:
        iw = min(box[2], other[2]) - max(box[0], other[0])
        ih = min(box[3], other[3]) - max(box[1], other[1])
        if iw > 0 and ih > 0:
            smaller = min((box[2] - box[0]) * (box[3] - box[1]), (other[2] - other[0]) * (other[3] - other[1]))
            if iw * ih > MAX_OVERLAP * smaller:
                return True
    return False


def _colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """An RGB colour far enough from ``under`` (the mean background colour under the shape)."""
    for _ in range(20):
        colour = rng.uniform(0.0, 255.0, size=3)
        if np.linalg.norm(colour - under) >= MIN_COLOUR_DISTANCE:
            return colour
    return 255.0 - under


def render_scene(seed: int | Sequence[int], image_size: int = DEFAULT_IMAGE_SIZE) -> Scene:
    """Draw one image and its boxes, determined by ``seed`` (an int or a sequence of ints)."""
    rng = np.random.default_rng(seed)
    size = image_size
    canvas = _background(rng, size)
    background = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    image = background.astype(np.float32)
    boxes: list[np.ndarray] = []
    labels: list[int] = []
    for _ in range(int(rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1))):
        label = int(rng.integers(1, len(SYNTH_CLASSES) + 1))
        outline = _outline(rng, label, rng.uniform(*OBJECT_SIDE) * size)
        low, high = outline.min(axis=0), outline.max(axis=0)
        for _ in range(PLACEMENT_TRIES):
            centre = rng.uniform(1.0 - low, size - 1.0 - high)
            rough = np.concatenate([low + centre, high + centre])  # xyxy
            if not _overlaps(rough, boxes):
                break
        else:
            continue
        mask = np.zeros((size, size), dtype=np.uint8)
        vertices = np.rint((outline + centre) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
        cv2.fillPoly(mask, [vertices], 255, lineType=cv2.LINE_AA, shift=_SUBPIXEL_BITS)
        ys, xs = np.nonzero(mask)
        x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        region = (slice(y1, y2), slice(x1, x2))
        alpha = (mask[region].astype(np.float32) / 255.0)[..., None]  # [h, w, 1]
        under = canvas[region][mask[region] > 127].mean(axis=0)
        noise = rng.standard_normal(size=(y2 - y1, x2 - x1, 3), dtype=np.float32) * np.float32(6.0)
        paint = _colour(rng, under).astype(np.float32) + noise
        image[region] = image[region] * (1.0 - alpha) + paint * alpha
        boxes.append(np.array([x1, y1, x2, y2], dtype=np.float32))
        labels.append(label)
    result = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    # Pixels that alpha blending left unchanged after rounding stay outside no box: every changed pixel has
    # mask > 0, hence lies inside its shape's box.
    return Scene(
        image=result,
        background=background,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int64),
    )


def split_assignment(images: int, seed: int) -> dict[str, list[int]]:
    """Image indices of each split (train, val, test; each non-empty), drawn from ``seed``."""
    order = np.random.default_rng([seed, images, 7]).permutation(images)
    counts = {name: max(1, int(round(images * fraction))) for name, fraction in SPLIT_FRACTIONS.items()}
    n_train = images - sum(counts.values())
    n_val = counts["val"]
    cuts = {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
    return {name: sorted(int(i) for i in part) for name, part in cuts.items()}


def _image_name(i: int) -> str:
    return f"{i:06d}"


def _encode_jpeg(image_rgb: np.ndarray, path: Path) -> None:
    bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise DataError("cannot encode image", path=path)
    path.write_bytes(data.tobytes())


def _voc_xml(name: str, scene: Scene) -> bytes:
    height, width = scene.image.shape[:2]
    names = [SYNTH_CLASSES[label - 1] for label in scene.labels]
    boxes = np.asarray(scene.boxes, dtype=np.int64)  # whole pixels, written as integers
    return voc_xml(f"{name}.jpg", width, height, boxes, names, [False] * len(names), database="ssdcli synthetic shapes")


def _write_voc(root: Path, scenes: list[Scene], splits: dict[str, list[int]]) -> None:
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    for i, scene in enumerate(scenes):
        name = _image_name(i)
        _encode_jpeg(scene.image, root / "JPEGImages" / f"{name}.jpg")
        (root / "Annotations" / f"{name}.xml").write_bytes(_voc_xml(name, scene))
    lists = dict(splits, trainval=sorted(splits["train"] + splits["val"]))
    for split, members in lists.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{_image_name(i)}\n" for i in members))


def _write_coco(root: Path, scenes: list[Scene], splits: dict[str, list[int]]) -> None:
    (root / "annotations").mkdir(parents=True)
    categories = [{"id": k, "name": name, "supercategory": "shape"} for k, name in enumerate(SYNTH_CLASSES, 1)]
    annotation_id = 1
    for split, members in splits.items():
        (root / split).mkdir()
        images, annotations = [], []
        for i in members:
            scene = scenes[i]
            height, width = scene.image.shape[:2]
            file_name = f"{_image_name(i)}.jpg"
            _encode_jpeg(scene.image, root / split / file_name)
            images.append(coco_image(i + 1, file_name, width, height))
            boxes = np.asarray(scene.boxes, dtype=np.int64)  # whole pixels
            labels = [int(label) for label in scene.labels]
            annotations += coco_annotations(boxes, labels, [False] * len(labels), i + 1, annotation_id)
            annotation_id += len(labels)
        data = {
            "info": {"description": "ssdcli synthetic shapes", "version": "1"},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))


def _check_output(out: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UsageError("output exists and is not a folder; choose a new folder", path=out)
    if out.is_dir() and any(out.iterdir()):
        raise UsageError("output folder is not empty; choose a new or empty folder (nothing was written)", path=out)


def write_synth(
    out: str | Path,
    format: str = "voc",
    images: int = DEFAULT_IMAGES,
    seed: int = 0,
    image_size: int = DEFAULT_IMAGE_SIZE,
) -> SynthResult:
    """Generate the synthetic data set into ``out``, which must not exist or be an empty folder.

    The data set is written into a hidden sibling folder first and renamed to ``out`` when complete, so a
    failure leaves nothing behind. Splits: about 70 % train, 15 % val, 15 % test (VOC also trainval).
    """
    if format not in SYNTH_FORMATS:
        raise UsageError(f"unknown format {format!r} (choose from {', '.join(SYNTH_FORMATS)})")
    if images < 3:
        raise UsageError(f"images: need at least 3 (one per split), got {images}")
    if image_size < MIN_IMAGE_SIZE:
        raise UsageError(f"image size: need at least {MIN_IMAGE_SIZE} px, got {image_size}")
    out = Path(out)
    _check_output(out)
    scenes = [render_scene([seed, i], image_size) for i in range(images)]
    splits = split_assignment(images, seed)
    writer = _write_voc if format == "voc" else _write_coco
    write_folder(out, lambda folder: writer(folder, scenes, splits))
    counts = np.bincount(np.concatenate([s.labels for s in scenes]), minlength=len(SYNTH_CLASSES) + 1)[1:]
    sizes = {name: len(members) for name, members in splits.items()}
    if format == "voc":
        sizes["trainval"] = sizes["train"] + sizes["val"]
    return SynthResult(
        root=out,
        format=format,
        image_size=image_size,
        class_names=SYNTH_CLASSES,
        split_sizes=sizes,
        images=images,
        objects_per_class=tuple(int(c) for c in counts),
    )
