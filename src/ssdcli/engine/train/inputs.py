"""What a training run is given, checked before anything is written: the settings (and those of a run being
resumed), the length (epochs or a time budget), the options that need no data, the data splits with every image
decoded once, and the model's configuration."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ssdcli.config import MIN_VALIDATION_OBJECTS, DataSettings, TrainConfig
from ssdcli.core.layouts import AnchorLayout
from ssdcli.data.dataset import is_split_file, open_index
from ssdcli.data.files import check_output_folder
from ssdcli.data.records import DatasetIndex, why_no_targets
from ssdcli.data.verify import ImageCheckCache, verify_index
from ssdcli.engine.checkpoint import Checkpoint, load_checkpoint
from ssdcli.engine.encode.layouts import load_layout_file
from ssdcli.engine.events import EventHandler, TaskProgress
from ssdcli.engine.train.budget import DEFAULT_BUDGET_S, format_duration
from ssdcli.engine.train.schedule import check_optimizer
from ssdcli.errors import CheckpointError, DataError, UsageError
from ssdcli.models.build import build_backbone, check_feature_maps
from ssdcli.models.spec import ModelConfig, default_config, default_layout
from ssdcli.models.weights import IMAGENET
from ssdcli.models.zoo import check_arch

#: Settings a resume takes from the command rather than from the run: where the output goes, the hardware, and how
#: the images are checked. ``epochs`` is taken too, when it differs (the schedule is then rebuilt).
RESUME_TAKES = (
    "out", "device", "workers", "threads", "resume", "tensorboard", "mlflow", "verify_images", "strict"
)


def resolve_resume(config: TrainConfig) -> tuple[TrainConfig, Checkpoint | None]:
    """On resume, the saved run's settings win (same schedule), except where the output and hardware go."""
    if config.runtime.resume is None:
        return config, None
    checkpoint = load_checkpoint(config.runtime.resume)
    saved = (checkpoint.train_state or {}).get("config")
    if saved is None:
        raise CheckpointError(
            "holds no training state to resume from (was it exported for inference?)", config.runtime.resume
        )
    given = config.values()
    restored = TrainConfig.from_dict(saved).updated(**{name: given[name] for name in RESUME_TAKES})
    epochs = config.optim.epochs
    if epochs is not None and epochs != restored.optim.epochs:
        restored = restored.updated(epochs=epochs, time_budget=None)
    return restored, checkpoint


def resume_ignored(given: TrainConfig, restored: TrainConfig) -> list[str]:
    """Settings given with a resume that differ from the run's own and are not taken (the run's are kept)."""
    defaults, chosen, kept = TrainConfig().values(), given.values(), restored.values()
    taken = {*RESUME_TAKES, "epochs"}
    return [
        name
        for name, value in chosen.items()
        if name not in taken and value != defaults[name] and value != kept[name]
    ]


IMAGE_CHECK_CACHE = ".image-checks.json"


def resolve_length(config: TrainConfig) -> tuple[TrainConfig, str]:
    """A number of epochs or a time budget (the default budget when neither is set), and a line saying which."""
    if config.optim.epochs is not None:  # TrainConfig checked the values and that only one of the two is set
        return config, f"training for {config.optim.epochs} epochs"
    if config.optim.time_budget is None:
        config = config.updated(time_budget=DEFAULT_BUDGET_S)
        origin = "the default budget; set `time_budget` or `epochs` to change it"
    else:
        origin = "`time_budget`"
    budget = config.optim.time_budget
    assert budget is not None  # set just above
    return config, (
        f"training for about {format_duration(budget)} ({origin}): the number of epochs is fitted "
        "to the speed measured in the first epoch"
    )


@dataclass(frozen=True)
class TrainData:
    """The splits a run uses, verified; ``val`` is None when validation is off."""

    train: DatasetIndex
    val: DatasetIndex | None
    cache: ImageCheckCache | None = None
    notes: tuple[str, ...] = ()


AUTO_ANCHORS = "auto"
#: Aspect ratios fitted per layer by ``--anchors auto`` (as ``ssd encode --suggest 2``).
AUTO_ANCHOR_RATIOS = 2


def is_auto_anchors(anchors: Path | str | None) -> bool:
    return anchors is not None and str(anchors) == AUTO_ANCHORS


def fit_anchors(config: TrainConfig, index: DatasetIndex) -> tuple[AnchorLayout, str]:
    """The default-box layout of ``config.model.arch`` fitted to the boxes of the training split (the machinery of
    ``ssd encode --suggest``: same feature maps, sizes and aspect ratios searched for coverage at IoU 0.5), and one
    line with the coverage before and after. The start layout is kept when nothing beats it."""
    from ssdcli.engine.encode.coverage import gt_set_from_index
    from ssdcli.engine.encode.suggest import suggest_layout

    start = default_layout(config.model.arch, config.model.img_size)
    found = suggest_layout(gt_set_from_index(index, str(index.root), index.split), start, AUTO_ANCHOR_RATIOS)
    layout = found.layout if found.accepted else start
    line = (
        f"anchors fitted to the {found.gts} training boxes: share with a default box of IoU > 0.5 "
        f"{found.start_coverage:.1%} -> {max(found.coverage, found.start_coverage):.1%}, mean best IoU "
        f"{found.start_mean_iou:.3f} -> {max(found.mean_iou, found.start_mean_iou):.3f}"
    )
    return layout, line


def check_options(config: TrainConfig) -> AnchorLayout | None:
    """Options that need no data, checked before anything is read or written; returns the anchor layout file's."""
    try:
        check_arch(config.model.arch)
    except ValueError as error:
        raise UsageError(f"model: {error}") from None
    check_optimizer(config.optim.optimizer)
    if config.optim.patience is not None and config.runtime.eval_every == 0:
        raise UsageError("`patience` counts validations, and `eval_every` 0 turns them off")
    check_output_folder(config.runtime.out)
    if config.model.weights is not None:
        return None  # the detector's layout and input size come with its weights (engine/train/finetune.py)
    if is_auto_anchors(config.model.anchors):
        if config.data.data is None:
            raise UsageError("anchors 'auto' fits the default boxes to a data set's boxes; give the data to train on")
        layout = None  # fitted once the training split is open (fit_anchors)
    else:
        anchors_file = config.model.anchors
        layout = load_layout_file(anchors_file) if anchors_file is not None else None
        if layout is not None and anchors_file is not None and config.runtime.resume is None:
            check_layout_fits(config.model.arch, layout, Path(anchors_file))
    size = config.model.img_size
    if layout is not None and size is not None and size != layout.image_size:
        raise UsageError(f"`img_size` {size}: the anchor layout file is for {layout.image_size} px inputs")
    if layout is None:
        try:
            default_layout(config.model.arch, size)
        except ValueError as error:
            raise UsageError(f"`img_size` {size}: {error}; give an anchor layout file for that size") from None
    weights = config.model.backbone_weights
    if weights is not None and weights != IMAGENET and not Path(weights).is_file():
        raise CheckpointError(f"backbone weights: neither {IMAGENET!r} nor an existing file", path=weights)
    return layout


def check_layout_fits(arch: str, layout: AnchorLayout, path: Path) -> None:
    """A :class:`UsageError` naming the anchor layout file ``path`` unless ``arch``'s backbone gives the feature
    maps of ``layout`` at its input size."""
    model_config = default_config(arch, num_classes=2, layout=layout)
    try:
        check_feature_maps(build_backbone(model_config), model_config)
    except UsageError as error:
        raise UsageError(error.message, path=path) from None


def open_split(
    settings: DataSettings, data: Path, split: str | None, classes: Sequence[str] | None, default_split: str = "train"
) -> DatasetIndex:
    return open_index(
        data, split, settings.data_format, classes, check_images=not settings.verify_images, default_split=default_split
    )


def open_data(config: TrainConfig, data: Path, emit: EventHandler) -> TrainData:
    """Index the training split and (when validation is on) the validation split, then decode every image once.

    A COCO file given as ``data`` is the training split only: validation then comes from ``val_data``, or is
    left out with a note. A validation split that cannot be opened is an error, not a silent run without
    validation; a split that a file cannot give is an error too.
    """
    settings = config.data
    train_index = open_split(settings, data, settings.train_split, settings.classes)
    empty = why_no_targets(train_index)
    if empty is not None:
        raise DataError(f"the {train_index.split!r} split holds no object to train on: {empty}", path=data)
    classes = train_index.class_names[1:]
    val_index, notes = None, []
    if config.runtime.eval_every > 0:
        if is_split_file(data) and settings.val_data is None and settings.val_split is None:
            notes.append(
                f"no validation: {data.name} holds the {train_index.split!r} split only (give the validation "
                "file, or the data set root); best.pt is a copy of last.pt"
            )
        else:
            source = settings.val_data if settings.val_data is not None else data
            try:
                val_index = open_split(settings, source, settings.val_split, classes, default_split="val")
            except DataError as error:
                raise DataError(
                    f"validation split {settings.val_split or 'val'!r}: {error.message} (choose another validation "
                    "split, or turn validation off)",
                    path=error.path,
                ) from None
            notes += validation_notes(val_index)
    if val_index is not None:
        notes.extend(_shared_images_note(train_index, val_index))
    if not settings.verify_images:
        return TrainData(train_index, val_index, notes=tuple(notes))
    cache = ImageCheckCache.load(config.runtime.out / IMAGE_CHECK_CACHE)
    verified: list[DatasetIndex | None] = []
    for index in (train_index, val_index):
        if index is None:
            verified.append(None)
            continue
        task = f"check images ({index.split})"
        verified.append(
            verify_index(
                index,
                workers=config.runtime.workers,
                cache=cache,
                strict=settings.strict,
                on_progress=functools.partial(_report_progress, emit, task),
            )
        )
    train_checked, val_checked = verified
    assert train_checked is not None  # the training split is always there
    return TrainData(train_checked, val_checked, cache, tuple(notes))


def _report_progress(emit: EventHandler, task: str, done: int, total: int) -> None:
    emit(TaskProgress(task, done, total))


def validation_notes(index: DatasetIndex) -> list[str]:
    """What the run should know of its validation split before it starts; a split the evaluator would refuse is
    a :class:`DataError` here rather than after the first validated epoch."""
    if index.unevaluable is not None:
        raise DataError(
            f"validation split {index.split!r} cannot be evaluated: {index.unevaluable} (pycocotools indexes "
            "images and annotations by id; give each its own id, or turn validation off)",
            path=index.annotations_file,
        )
    empty = why_no_targets(index)
    if empty is None:
        return few_objects_note(index)
    return [
        f"validation split {index.split!r} holds no object that evaluation scores ({empty}): its mAP is undefined, "
        "so best.pt cannot be chosen and is not written (last.pt holds the last epoch)"
    ]


def few_objects_note(index: DatasetIndex, least: int = MIN_VALIDATION_OBJECTS) -> list[str]:
    """A warning when classes of the validation split have fewer than ``least`` scored objects: one object found
    or missed then moves a class's AP by chance, so ``best.pt`` is chosen by the mAP of the other classes (or, when
    no class has enough, by a mean that follows chance)."""
    counts = dict.fromkeys(index.class_names[1:], 0)
    for record in index.records:
        for label in record.labels[~record.ignore].tolist():
            counts[index.class_names[label]] += 1
    few = {name: count for name, count in counts.items() if count < least}
    if not few:
        return []
    listed = ", ".join(f"{name} {count}" for name, count in sorted(few.items(), key=lambda item: item[1]))
    start = f"validation split {index.split!r} has fewer than {least} objects of {listed}: "
    if len(few) < len(counts):
        kept = ", ".join(name for name in counts if name not in few)
        return [
            start + f"their AP moves by chance between epochs, so best.pt is chosen by the mAP of {kept} "
            "(metrics.csv: select_map50); a larger validation split measures every class"
        ]
    return [
        start + "its mAP moves by chance between epochs and best.pt may follow that chance; give validation more "
        "images, or compare best.pt with last.pt"
    ]


def _shared_images_note(train_index: DatasetIndex, val_index: DatasetIndex) -> list[str]:
    """A warning when validation images are training images too (e.g. ``val_split`` names the training split):
    the validation figures and best.pt then reward memorising the training set."""
    trained = {record.path.resolve() for record in train_index.records}
    shared = sum(record.path.resolve() in trained for record in val_index.records)
    if not shared:
        return []
    return [
        f"{shared} of {len(val_index.records)} validation images ({val_index.split!r}) are training images too: "
        "the validation figures and best.pt measure the training set (choose a split apart)"
    ]


def model_config_for(
    config: TrainConfig, class_names: tuple[str, ...], layout: AnchorLayout | None, checkpoint: Checkpoint | None
) -> ModelConfig:
    if checkpoint is not None:
        spec = checkpoint.spec
        if spec.class_names != tuple(class_names):
            raise CheckpointError(
                f"classes {list(spec.class_names[1:])} differ from the data's {list(class_names[1:])}",
                config.runtime.resume,
            )
        return spec.config
    layout = layout if layout is not None else default_layout(config.model.arch, config.model.img_size)
    return default_config(config.model.arch, num_classes=len(class_names), layout=layout)


def check_split_size(config: TrainConfig, index: DatasetIndex, processes: int, data: Path) -> None:
    """A split too small for one batch fails here, not as an empty epoch."""
    if len(index) < config.optim.batch_size * processes:
        raise DataError(
            f"the {index.split!r} split has {len(index)} usable images, fewer than one batch "
            f"({config.optim.batch_size} x {processes} processes); use a smaller batch size",
            data,
        )


def check_batch_norm(config: TrainConfig, model: nn.Module) -> None:
    """BatchNorm cannot take its statistics from one image: fail here, not at the first step."""
    if config.optim.batch_size == 1 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise UsageError(
            f"batch size 1: {config.model.arch} has BatchNorm layers, which cannot train on one image per batch; "
            "use a batch size of 2 or more"
        )
