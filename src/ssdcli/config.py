"""Frozen configuration dataclasses that the CLI builds and the engine consumes, and the one home of every choice
list and default they share with the library (the CLI's enums and the library functions' defaults read them)."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from ssdcli.errors import UsageError

#: The ``mlflow`` setting that tracks in ``MLFLOW_TRACKING_URI``, else in ``mlruns/`` beside the run folder.
DEFAULT_TRACKING = "default"

#: Data set layouts ``data_format`` may name ("auto": found from the files): the names of the format registry
#: ``ssdcli.data.formats.FORMATS``, kept here because config is a leaf (tests/test_data_formats.py checks they agree).
DATA_FORMATS = ("auto", "voc", "coco", "yolo")

#: Input normalisation of torchvision's ImageNet classifiers, for RGB images scaled to [0, 1].
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: How images are resized to the network input: "antialias": the 8-bit image, antialiased (ssdcli's pipeline,
#: training included); "bilinear": the normalised float image, bilinear without antialiasing (torchvision's
#: detection transform, which its COCO detectors were trained and evaluated with).
RESIZE_MODES = ("antialias", "bilinear")
DEFAULT_RESIZE = "antialias"

#: Largest zoom-out canvas of the training augmentation, as a multiple of the image side (DESIGN 1.6: 4; 1: off).
DEFAULT_ZOOM_OUT = 2.0
#: Whether the training augmentation takes SSD's min-IoU random crop (DESIGN 1.6).
DEFAULT_IOU_CROP = True
#: The share of training samples made as a mosaic of four images at the input's scale (data/mosaic.py); 0: off.
DEFAULT_MOSAIC = 0.0
#: The share of the last epochs trained without mosaics, so the model ends on whole images as inference sees them.
DEFAULT_MOSAIC_CLOSE = 0.15

#: The exponential moving average of the weights: the decay it approaches, and the optimizer steps over which it
#: ramps up (engine/train/ema.py).
DEFAULT_EMA_DECAY = 0.995
DEFAULT_EMA_TAU = 100.0

#: What ``ssd export`` writes, what ``ssd eval`` and ``ssd predict`` run, and what ``ssd benchmark`` measures (in
#: its table's order: the checkpoint, then each export target).
EXPORT_FORMATS = ("onnx", "torchscript", "openvino")
MODEL_FORMATS = ("checkpoint", "onnx", "torchscript", "openvino")
BENCHMARK_FORMATS = ("checkpoint", "torchscript", "onnx", "onnx-int8", "openvino")

#: ``ssd eval``'s modes; the VOC AP rules (voc07: 11-point, voc12: the area under the precision envelope), the
#: COCO evaluation packages, and the IoU a detection needs to match an object in VOC AP.
EVAL_MODES = ("coco", "voc", "model")
VocMetric = Literal["voc07", "voc12"]
VOC_METRICS: tuple[VocMetric, ...] = get_args(VocMetric)
DEFAULT_VOC_METRIC: VocMetric = "voc07"
COCO_BACKENDS = ("pycocotools", "faster-coco-eval")
DEFAULT_COCO_BACKEND = "pycocotools"
DEFAULT_VOC_IOU = 0.5

#: Validation objects a class needs before its AP takes part in choosing ``best.pt``: with fewer, one object
#: found or missed moves the class's AP by a third or more, and the mean with it, by chance rather than by what
#: the model learned (a split with fewer for every class chooses by the mean over all classes, with a warning).
MIN_VALIDATION_OBJECTS = 10


def _check_at_least(settings: object, minimum: Mapping[str, int]) -> None:
    """Refuse a field of ``settings`` below its least value (None: not set, always allowed)."""
    for name, least in minimum.items():
        value = getattr(settings, name)
        if value is not None and value < least:
            raise UsageError(f"`{name}`: expected at least {least}, got {value}")


@dataclass(frozen=True)
class DataSettings:
    """What ``ssd train`` trains and validates on. ``data=None``: the built-in synthetic set, generated in the
    run (``synth_images`` images)."""

    data: Path | None = None
    data_format: str = "auto"
    train_split: str | None = None  # None: "train" of a data set root, or the split a COCO file holds
    val_split: str | None = None  # None: "val" of a data set root (of val_data if given)
    val_data: Path | None = None  # validation data apart from ``data`` (a COCO file of another split)
    classes: tuple[str, ...] | None = None
    synth_images: int = 400
    verify_images: bool = True  # decode every image once before the first step (data/verify.py)
    strict: bool = False  # an image that does not decode is an error instead of being left out

    def __post_init__(self) -> None:
        if self.data_format not in DATA_FORMATS:
            raise UsageError(f"`data_format`: expected one of {', '.join(DATA_FORMATS)}, got {self.data_format!r}")
        _check_at_least(self, {"synth_images": 8})


@dataclass(frozen=True)
class ModelSettings:
    """The network trained: its architecture, default boxes and the weights it starts from."""

    arch: str = "ssd_tiny256"
    anchors: Path | None = None  # an anchor layout file, or "auto" (fitted to the training boxes)
    backbone_weights: str | None = None
    weights: str | None = None  # a torchvision COCO detector to start from (weights name or state dict file)
    img_size: int | None = None  # any multiple of 32 for the ssd_tiny family; else the anchor layout's
    freeze: str | None = None  # "backbone", or "N": the first N stages of the backbone (engine/train/freeze.py)
    auto_recipe: bool = True  # input size and default boxes fitted to the data (engine/train/recipe_rule.py)

    def __post_init__(self) -> None:
        _check_at_least(self, {"img_size": 1})
        if self.freeze is not None and self.freeze != "backbone" and not (self.freeze.isdigit() and int(self.freeze) >= 1):
            raise UsageError(f"`freeze`: expected 'backbone' or a number of backbone stages (1 or more), got {self.freeze!r}")


@dataclass(frozen=True)
class OptimSettings:
    """How long and how the weights are optimised: length, batches, optimizer, schedule and weight averaging."""

    epochs: int | None = None  # None with time_budget None: the default budget (engine/train/budget.py)
    time_budget: float | None = None  # seconds of wall clock; the schedule is fitted to the measured speed
    patience: int | None = None  # stop after this many validations without a better mAP (None: never)
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float | None = None  # None: the default of the model and optimizer (engine/train/schedule.py)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 100
    ema: bool = True  # validate and save an exponential moving average of the weights (engine/train/ema.py)
    ema_decay: float = DEFAULT_EMA_DECAY
    ema_tau: float = DEFAULT_EMA_TAU  # optimizer steps over which the EMA decay ramps up

    def __post_init__(self) -> None:
        if self.epochs is not None and self.time_budget is not None:
            raise UsageError("`epochs` and `time_budget` both given; choose one")
        if self.time_budget is not None and not self.time_budget > 0:
            raise UsageError(f"`time_budget`: expected a positive duration, got {self.time_budget} s")
        if self.lr is not None and not self.lr > 0:
            raise UsageError(f"`lr`: expected a positive learning rate, got {self.lr}")
        if not 0.0 <= self.momentum < 1.0:
            raise UsageError(f"`momentum`: expected a value in [0, 1), got {self.momentum}")
        if not 0.0 < self.ema_decay < 1.0:
            raise UsageError(f"`ema_decay`: expected a value in (0, 1), got {self.ema_decay}")
        _check_at_least(self, {"epochs": 1, "batch_size": 1, "warmup_steps": 0, "patience": 1})
        if self.weight_decay < 0:
            raise UsageError(f"`weight_decay`: expected at least 0, got {self.weight_decay}")
        if not self.ema_tau > 0:
            raise UsageError(f"`ema_tau`: expected a positive number of steps, got {self.ema_tau}")


@dataclass(frozen=True)
class AugmentSettings:
    """The training augmentation (data/transforms.py)."""

    zoom_out: float = DEFAULT_ZOOM_OUT  # largest zoom-out canvas (DESIGN 1.6: 4); 1 turns zoom-out off
    iou_crop: bool = DEFAULT_IOU_CROP  # the min-IoU random crop (DESIGN 1.6)
    mosaic: float = DEFAULT_MOSAIC  # share of samples made as a mosaic of four images (data/mosaic.py); 0: off
    mosaic_close: float = DEFAULT_MOSAIC_CLOSE  # share of the last epochs without mosaics

    def __post_init__(self) -> None:
        if not 1.0 <= self.zoom_out < float("inf"):  # NaN fails every comparison
            raise UsageError(f"`zoom_out`: expected a finite number, at least 1 (1: off), got {self.zoom_out}")
        if not 0.0 <= self.mosaic <= 1.0:
            raise UsageError(f"`mosaic`: expected a share from 0 (off) to 1, got {self.mosaic}")
        if not 0.0 <= self.mosaic_close <= 1.0:
            raise UsageError(f"`mosaic_close`: expected a share of the epochs from 0 to 1, got {self.mosaic_close}")

    def mosaic_at(self, epoch: int, planned: int | None) -> float:
        """The mosaic share of epoch ``epoch`` (0-based) of ``planned`` epochs (None: not known yet, as in a time
        budget's first epoch): ``mosaic``, and 0 in the last ``mosaic_close`` share of the epochs."""
        if planned is None or epoch < planned - round(self.mosaic_close * planned):
            return self.mosaic
        return 0.0


@dataclass(frozen=True)
class RuntimeSettings:
    """Where and how the run executes: processes, device, randomness, validation, outputs and resuming."""

    workers: int = 2
    threads: int | None = None  # CPU threads of the main process; None: the cores the workers leave free (>= 1)
    device: str = "auto"
    amp: bool = False
    seed: int = 0
    eval_every: int = 1
    out: Path = Path("runs/train")
    resume: Path | None = None
    max_steps_per_epoch: int | None = None  # cap for quick runs and tests
    tensorboard: bool = False  # also write TensorBoard event files into the run folder (optional package)
    mlflow: str | None = None  # an MLflow tracking URI, or "default" (engine/train/mlflow_log.py); None: off

    def __post_init__(self) -> None:
        _check_at_least(self, {"workers": 0, "threads": 1, "eval_every": 0, "max_steps_per_epoch": 1})


#: The parts of a :class:`TrainConfig`, by attribute name. Field names are unique across the parts.
TRAIN_PARTS: dict[str, type] = {
    "data": DataSettings,
    "model": ModelSettings,
    "optim": OptimSettings,
    "augment": AugmentSettings,
    "runtime": RuntimeSettings,
}
#: Fields saved as strings and read back as paths, and fields saved as lists and read back as tuples.
_PATH_FIELDS = frozenset({"data", "val_data", "anchors", "out", "resume"})
_TUPLE_FIELDS = frozenset({"classes"})


def _saved_value(name: str, value: Any) -> Any:
    """A field's value as the dataclass holds it, from its saved (JSON-friendly) form."""
    if value is None:
        return None
    if name in _PATH_FIELDS:
        return Path(value)
    if name in _TUPLE_FIELDS:
        return tuple(value)
    return value


def _settings_from_dict(kind: type[Any], values: Mapping[str, Any]) -> Any:
    """The part ``kind`` made of the entries of ``values`` that are its fields (other entries are ignored)."""
    names = {f.name for f in fields(kind)}
    return kind(**{name: _saved_value(name, value) for name, value in values.items() if name in names})


_TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", Path: "a path"}


def _fits(value: Any, kind: Any) -> bool:
    """Whether ``value`` (as JSON holds it) is a saved form of type ``kind`` (``tuple[str, ...]``: a list of strings)."""
    if get_origin(kind) is tuple:
        return isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)
    if isinstance(value, bool) or kind is bool:
        return isinstance(value, bool) and kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, str if kind is Path else kind)


def check_saved_value(part: type[Any], name: str, value: Any) -> None:
    """Refuse a saved value of field ``name`` of ``part`` whose type is not the field's (``"lr": "fast"``)."""
    hint = get_type_hints(part)[name]
    kinds = get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in kinds:
        return
    allowed = [kind for kind in kinds if kind is not type(None)]
    if not any(_fits(value, kind) for kind in allowed):
        expected = " or ".join(_TYPE_NAMES.get(kind, "a list of strings") for kind in allowed)
        optional = " (or null)" if type(None) in kinds else ""
        raise UsageError(f"`{name}`: expected {expected}{optional}, got {value!r}")


def check_saved_keys(values: Mapping[str, Any]) -> None:
    """Refuse what is no setting in a config file: an unknown part or field, and values of the wrong type.
    Messages name the key (``optim.mosaic``)."""
    for part, entries in values.items():
        if part not in TRAIN_PARTS:
            raise UsageError(f"{part!r} is not a part of a training config (parts: {', '.join(TRAIN_PARTS)})")
        names = {f.name for f in fields(TRAIN_PARTS[part])}
        for name, value in entries.items():
            if name not in names:
                raise UsageError(f"'{part}.{name}' is not a setting of a training run")
            check_saved_value(TRAIN_PARTS[part], name, value)


def _saved_form(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``ssd train`` needs, in five parts that each check their own values when made (errors name the
    field, e.g. ```lr```); what needs the data or the model is checked before anything is written
    (engine/train/inputs.py). ``TrainConfig(optim=OptimSettings(epochs=3))``: the defaults elsewhere."""

    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)

    def values(self) -> dict[str, Any]:
        """Every field of every part, by its name (``{"data": ..., "lr": ...}``)."""
        return {name: value for part in TRAIN_PARTS for name, value in asdict(getattr(self, part)).items()}

    def updated(self, **changes: Any) -> TrainConfig:
        """A copy with the named fields changed in whichever part holds them (``config.updated(lr=0.1)``)."""
        parts: dict[str, Any] = {}
        for part, kind in TRAIN_PARTS.items():
            own = {name: changes.pop(name) for name in [f.name for f in fields(kind)] if name in changes}
            if own:
                parts[part] = replace(getattr(self, part), **own)
        if changes:
            raise TypeError(f"TrainConfig has no field {', '.join(sorted(changes))}")
        return replace(self, **parts)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The nested form saved in a run's config.json and its checkpoints (paths as strings)."""
        return {
            part: {name: _saved_form(value) for name, value in asdict(getattr(self, part)).items()}
            for part in TRAIN_PARTS
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], strict: bool = False) -> TrainConfig:
        """A config from :meth:`to_dict`'s nested form. Missing fields take their defaults; entries that are no
        field are ignored. ``strict`` (a config file given to reproduce a run): an unknown entry or a value of the
        wrong type is a :class:`UsageError` naming it. A part that is not an object of settings is one always."""
        for part in TRAIN_PARTS:
            entries = values.get(part)
            if entries is not None and not isinstance(entries, Mapping):
                raise UsageError(f"{part!r}: expected an object of settings, got {entries!r}")
        if strict:
            check_saved_keys(values)
        return cls(**{part: _settings_from_dict(kind, values.get(part) or {}) for part, kind in TRAIN_PARTS.items()})


@dataclass(frozen=True)
class ExportConfig:
    """Everything ``ssd export`` needs; the combination is checked when it is made (errors name the field).

    ``checkpoint``: a checkpoint of ``ssd train``, or torchvision's COCO detector (weights name or file).
    ``target``: onnx, torchscript or openvino. ``out`` None: beside the checkpoint, with the target's suffix (for
    openvino, a folder ``<checkpoint stem>_openvino`` holding ``model.xml`` and ``model.bin``). ``int8``: ONNX quantised to INT8, calibrated
    on the images of the folder ``calibration`` (default: the checkpoint's training split)."""

    checkpoint: Path | str
    target: str = EXPORT_FORMATS[0]
    out: Path | None = None
    opset: int = 18
    dynamic_batch: bool = True
    with_nms: bool = False
    with_preprocess: bool = False
    int8: bool = False
    calibration: Path | None = None
    force: bool = False

    def __post_init__(self) -> None:
        if self.target not in EXPORT_FORMATS:
            raise UsageError(f"`target`: expected one of {', '.join(EXPORT_FORMATS)}, got {self.target!r}")
        if self.opset < 18:
            raise UsageError(f"`opset`: expected 18 or later (PyTorch's current exporter), got {self.opset}")
        if self.with_nms and self.target != "onnx":
            raise UsageError("`with_nms` applies to `target` onnx only")
        if self.int8 and (self.target != "onnx" or self.with_nms):
            raise UsageError("`int8` applies to `target` onnx without `with_nms` (quantise the network, decode in ssdcli)")
        if self.calibration is not None and not self.int8:
            raise UsageError("`calibration` applies to `int8` only")
        if self.with_preprocess and (self.target != "onnx" or self.int8):
            raise UsageError("`with_preprocess` applies to `target` onnx without `int8`")


@dataclass(frozen=True)
class BenchmarkConfig:
    """Everything ``ssd benchmark`` needs, checked when made (errors name the field).

    ``checkpoint`` is exported to each of ``formats`` (see BENCHMARK_FORMATS) into a scratch folder; every form is
    timed on the CPU at batch 1 and at ``batch_size`` (the median of ``runs`` timed runs after ``warmup`` ones)
    and evaluated on ``data``/``split`` (None: "test"). INT8 is calibrated on the data set's ``train_split``."""

    checkpoint: Path | str
    data: Path
    split: str | None = None
    data_format: str = "auto"
    train_split: str = "train"
    batch_size: int = 8
    runs: int = 10
    warmup: int = 2
    eval_batch_size: int = 16
    formats: tuple[str, ...] = BENCHMARK_FORMATS

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise UsageError(f"`batch_size`: expected 2 or more (batch 1 is always timed), got {self.batch_size}")
        if self.runs < 1 or self.warmup < 0:
            raise UsageError(f"`runs`: expected 1 or more and `warmup` 0 or more, got {self.runs} and {self.warmup}")
        if self.eval_batch_size < 1:
            raise UsageError(f"`eval_batch_size`: expected 1 or more, got {self.eval_batch_size}")
        unknown = [name for name in self.formats if name not in BENCHMARK_FORMATS]
        if unknown:
            raise UsageError(f"`formats`: unknown {unknown[0]!r} (choose from {', '.join(BENCHMARK_FORMATS)})")


#: The smallest window of sliced inference (``tile``), in pixels.
MIN_TILE = 32


def check_tiling(tile: int | None, tile_overlap: float) -> None:
    """The sliced-inference settings of ``ssd predict`` and ``ssd eval``: ``tile`` None (whole images) or a window
    of at least :data:`MIN_TILE` pixels, ``tile_overlap`` a share of the window in [0, 0.9)."""
    if tile is not None and tile < MIN_TILE:
        raise UsageError(f"`tile`: expected a window of at least {MIN_TILE} pixels, got {tile}")
    if not 0.0 <= tile_overlap < 0.9:
        raise UsageError(f"`tile_overlap`: expected a share of the window in [0, 0.9), got {tile_overlap:g}")


@dataclass(frozen=True)
class EvalConfig:
    """Everything ``ssd eval`` needs, in one of three modes, checked when it is made (errors name the field):

    * ``coco``: ``results`` (a COCO results JSON) against ``gt`` (an instances JSON), pycocotools' metrics;
    * ``voc``: ``results`` (a results JSON or a folder of devkit files) against the VOC split ``data``/``split``,
      devkit AP (``metric``, ``iou_threshold``, ``classes``);
    * ``model``: run ``model`` (``model_format``: a checkpoint, or an ONNX, TorchScript or OpenVINO export) over
      ``data``/``split``, write its detections into a fresh folder under ``out``, then both evaluations.

    ``metric``, ``iou_threshold`` and ``backend`` are None unless chosen (defaults: DEFAULT_VOC_METRIC, DEFAULT_VOC_IOU, DEFAULT_COCO_BACKEND), so
    that a choice that does not apply to the mode is refused rather than ignored. ``tile`` (``model`` mode): each
    image is detected in overlapping windows of that many pixels (``tile_overlap`` of a window shared) and as a
    whole, the detections merged (``ssdcli.engine.inference.tiled``); None: whole images only."""

    mode: str
    results: Path | None = None
    gt: Path | None = None
    data: Path | None = None
    split: str | None = None  # None: "test" (a COCO file is its own split)
    metric: str | None = None
    iou_threshold: float | None = None
    classes: tuple[str, ...] | None = None
    per_class: bool = False
    backend: str | None = None
    model: Path | str | None = None
    model_format: str = MODEL_FORMATS[0]
    data_format: str = "auto"
    out: Path = Path("runs/eval")
    batch_size: int = 16
    device: str = "auto"
    plots: Path | None = None
    force: bool = False
    tile: int | None = None  # sliced inference: the window in pixels (None: whole images)
    tile_overlap: float = 0.2
    flip: bool = False  # test-time flip: each image and its mirror image, merged by one NMS

    def __post_init__(self) -> None:
        check_tiling(self.tile, self.tile_overlap)
        if self.mode not in EVAL_MODES:
            raise UsageError(f"`mode`: expected one of {', '.join(EVAL_MODES)}, got {self.mode!r}")
        if self.model_format not in MODEL_FORMATS:
            raise UsageError(f"`model_format`: expected one of {', '.join(MODEL_FORMATS)}, got {self.model_format!r}")
        if self.metric is not None and self.metric not in VOC_METRICS:
            raise UsageError(f"`metric`: expected {' or '.join(VOC_METRICS)}, got {self.metric!r}")
        if self.backend is not None and self.backend not in COCO_BACKENDS:
            raise UsageError(f"`backend`: expected {' or '.join(COCO_BACKENDS)}, got {self.backend!r}")
        if self.iou_threshold is not None and not 0.0 < self.iou_threshold <= 1.0:
            raise UsageError(f"`iou_threshold` must be in (0, 1], got {self.iou_threshold}")
        if self.classes is not None and (not self.classes or len(set(self.classes)) != len(self.classes)):
            raise UsageError(f"`classes` must list distinct class names, got {','.join(self.classes)!r}")
        if self.batch_size < 1:
            raise UsageError(f"`batch_size`: expected at least 1, got {self.batch_size}")
        if self.mode == "model":
            self._reject(("results", "gt", "backend"), self.model_format)
            if self.model is None:
                raise UsageError(f"`{self.model_format}` needs the model file")
            if self.data is None:
                raise UsageError(f"`{self.model_format}` needs `data` (the data set to evaluate on)")
            return
        self._reject(("model", "plots", "tile", "flip"), self.mode)
        if self.results is None:
            raise UsageError("`results` is required (a results JSON, or a folder of devkit files with `voc`)")
        if self.mode == "coco":
            self._reject(("data", "split", "metric", "iou_threshold", "classes"), "coco")
            if self.gt is None:
                raise UsageError("`coco` needs `gt` (the ground-truth instances JSON)")
        else:
            self._reject(("gt", "per_class", "backend"), "voc")
            if self.data is None:
                raise UsageError("`voc` needs `data` (the VOC root folder)")

    def _reject(self, fields: tuple[str, ...], mode: str) -> None:
        for name in fields:
            value = getattr(self, name)
            if value is not None and value is not False:
                raise UsageError(f"`{name}` does not apply to `{mode}`")

    @property
    def voc_metric(self) -> str:
        return self.metric or DEFAULT_VOC_METRIC

    @property
    def iou(self) -> float:
        return DEFAULT_VOC_IOU if self.iou_threshold is None else self.iou_threshold

    @property
    def coco_backend(self) -> str:
        return self.backend or DEFAULT_COCO_BACKEND


@dataclass(frozen=True)
class PredictConfig:
    """Everything ``ssd predict`` needs, checked when made (errors name the field).

    ``model``: a checkpoint, torchvision's COCO detector (weights name or file), an exported ONNX file or an
    OpenVINO export (folder or ``.xml`` file). The
    inputs are either ``sources`` (image files, folders, glob patterns, videos) or the split ``split`` of the data
    set ``data`` (its results then carry the data set's ids, for ``ssd eval``). ``out``: the parent of the run
    folder of annotated copies; None: no pictures (the detections are only returned). ``iou_threshold`` None: the
    model's own NMS IoU. ``save_txt``: YOLO labels (``save_conf``: with scores) and the images they describe in
    the run folder; ``save_crop``: one picture per detection. Videos and streams (camera indices, rtsp/http URLs):
    every ``vid_stride``-th frame, at most ``max_frames`` per source (None: until it ends). ``tile``: each image
    detected in overlapping windows of that many pixels and as a whole, as ``EvalConfig.tile``."""

    model: Path | str
    sources: tuple[str, ...] = ()
    data: Path | None = None
    split: str | None = None  # None: "test" of a data set root (a COCO file is its own split)
    data_format: str = "auto"
    out: Path | None = Path("runs/predict")
    conf_threshold: float = 0.25
    iou_threshold: float | None = None
    classes: tuple[str, ...] | None = None
    batch_size: int = 16
    device: str = "auto"
    img_size: int | None = None  # must be the model's
    save_txt: bool = False
    save_conf: bool = False
    save_crop: bool = False
    max_frames: int | None = None
    vid_stride: int = 1
    tile: int | None = None  # sliced inference: the window in pixels (None: whole images)
    tile_overlap: float = 0.2
    flip: bool = False  # test-time flip: each image and its mirror image, merged by one NMS

    def __post_init__(self) -> None:
        check_tiling(self.tile, self.tile_overlap)
        if self.save_conf and not self.save_txt:
            raise UsageError("`save_conf` adds the score to the labels of `save_txt`: give both")
        if (self.save_txt or self.save_crop) and self.out is None:
            raise UsageError("`save_txt` and `save_crop` write into the run folder: they need `out`")
        if self.max_frames is not None and self.max_frames < 1:
            raise UsageError(f"`max_frames`: expected at least 1, got {self.max_frames}")
        if self.vid_stride < 1:
            raise UsageError(f"`vid_stride`: expected at least 1, got {self.vid_stride}")
        if bool(self.sources) == (self.data is not None):
            raise UsageError("give images to predict on (`sources`) or `data`, one of the two")
        if self.data is None and self.split is not None:
            raise UsageError("`split` applies to `data`")
        if not 0.0 <= self.conf_threshold <= 1.0:
            raise UsageError(f"`conf_threshold` must be in [0, 1], got {self.conf_threshold}")
        if self.iou_threshold is not None and not 0.0 <= self.iou_threshold <= 1.0:
            raise UsageError(f"`iou_threshold` must be in [0, 1], got {self.iou_threshold}")
        if self.batch_size < 1:
            raise UsageError(f"`batch_size`: expected at least 1, got {self.batch_size}")
        if self.classes is not None and not self.classes:
            raise UsageError("`classes`: expected at least one class name")
