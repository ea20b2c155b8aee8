"""The training loop behind ``ssd train``: data, model, schedule, AMP, DDP, checkpoints, metrics.csv."""

from __future__ import annotations

import csv
import json
import math
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from ssdcli.config import TrainConfig
from ssdcli.core.anchors import AnchorLayout, default_boxes
from ssdcli.core.loss import ssd_loss
from ssdcli.core.matching import encode
from ssdcli.data.collate import checked_batches, collate_detections
from ssdcli.data.dataset import DetectionDataset, is_split_file, open_index
from ssdcli.data.records import BACKGROUND, DatasetIndex
from ssdcli.data.sampling import SkipFirst
from ssdcli.data.synth import SYNTH_CLASSES, write_synth
from ssdcli.data.transforms import build_transforms
from ssdcli.data.verify import ImageCheckCache, verify_index
from ssdcli.errors import CheckpointError, DataError, PeerProcessFailed, SsdcliError, TrainingDiverged, UsageError
from ssdcli.models.build import build_model
from ssdcli.models.config import ModelConfig, check_arch, default_config
from ssdcli.models.weights import IMAGENET

from .budget import DEFAULT_BUDGET_S, BudgetClock, format_duration
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .device import cpu_threads, resolve_device
from .distributed import DistContext, init_distributed, is_peer_failure, shutdown_distributed
from .ema import ModelEMA
from .events import (
    CheckpointSaved,
    EpochDone,
    EventHandler,
    Message,
    RunStarted,
    ScheduleFitted,
    StepDone,
    TaskProgress,
    ignore_events,
)
from .finetune import start_from_detector
from .interrupts import StopRequests
from .rundir import fresh_run_dir
from .schedule import WarmupCosine, build_optimizer, check_optimizer, default_lr
from .tensorboard_log import TensorBoardLog, both
from .run_plots import RunPictures
from .validation import evaluate_model

#: Schedule length of a time-budget run until the first epoch has measured the speed (then re-fitted).
PROVISIONAL_STEPS = 1_000_000

METRIC_COLUMNS = ("epoch", "loss", "loss_conf", "loss_loc", "lr", "map50", "coco_ap", "seconds")


@dataclass
class TrainResult:
    """What a run did. ``signal``: the signal that stopped it (SIGINT, SIGTERM), None if it ran to its end;
    ``finished_already``: a resumed run that had nothing left to train (nothing was written)."""

    run_dir: Path | None
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    history: list[dict[str, float]] = field(default_factory=list)
    interrupted: bool = False
    signal: int | None = None
    finished_already: bool = False


def load_layout_file(path: Path) -> AnchorLayout:
    """An anchor layout JSON (as ``ssd encode --suggest`` writes); DataError naming the file if it is bad."""
    try:
        return AnchorLayout.from_dict(json.loads(Path(path).read_text()))
    except FileNotFoundError:
        raise DataError("anchor layout file not found", path=path) from None
    except json.JSONDecodeError as error:
        raise DataError(f"malformed JSON: {error}", path=path) from None
    except (ValueError, AttributeError, TypeError) as error:
        raise DataError(f"not an anchor layout: {error}", path=path) from None


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def _resolve_resume(config: TrainConfig) -> tuple[TrainConfig, Checkpoint | None]:
    """On resume, the saved run's settings win (same schedule), except where the output and hardware go."""
    if config.resume is None:
        return config, None
    checkpoint = load_checkpoint(config.resume)
    saved = (checkpoint.train_state or {}).get("config")
    if saved is None:
        raise CheckpointError("holds no training state to resume from (was it exported for inference?)", config.resume)
    keep = {
        "out": config.out,
        "device": config.device,
        "workers": config.workers,
        "threads": config.threads,
        "resume": config.resume,
        "tensorboard": config.tensorboard,
        "verify_images": config.verify_images,
        "strict": config.strict,
    }
    restored = TrainConfig(**{**_config_from_dict(saved).__dict__, **keep})
    if config.epochs is not None and config.epochs != restored.epochs:
        restored = replace(restored, epochs=config.epochs, time_budget=None)
    return restored, checkpoint


def resume_ignored(given: TrainConfig, restored: TrainConfig) -> list[str]:
    """Settings given with a resume that differ from the run's own and are not taken (the run's are kept)."""
    defaults = TrainConfig()
    taken = {"out", "device", "workers", "threads", "resume", "tensorboard", "verify_images", "strict", "epochs"}
    return [
        name
        for name in TrainConfig.__dataclass_fields__
        if name not in taken
        and getattr(given, name) != getattr(defaults, name)
        and getattr(given, name) != getattr(restored, name)
    ]


def _rng_state() -> dict[str, Any]:
    """The global generators' states (torch, NumPy, Python), saved with every checkpoint in types that
    ``torch.load(weights_only=True)`` reads (tensors, lists, numbers)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},  # fmt: skip
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }


def _restore_rng(state: dict[str, Any] | None) -> None:
    if not state:
        return
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))


def _config_from_dict(data: dict[str, Any]) -> TrainConfig:
    paths = {"data", "val_data", "anchors", "out", "resume"}
    values = {k: (Path(v) if k in paths and v is not None else v) for k, v in data.items()}
    if values.get("classes") is not None:
        values["classes"] = tuple(values["classes"])
    return TrainConfig(**values)


IMAGE_CHECK_CACHE = ".image-checks.json"


def _resolve_length(config: TrainConfig) -> tuple[TrainConfig, str]:
    """A number of epochs or a time budget (the default budget when neither is set), and a line saying which."""
    if config.epochs is not None and config.time_budget is not None:
        raise UsageError("--epochs and --time both given; choose one")
    if config.epochs is not None:
        if config.epochs < 1:
            raise UsageError(f"--epochs: expected at least 1, got {config.epochs}")
        return config, f"training for {config.epochs} epochs"
    if config.time_budget is None:
        config = replace(config, time_budget=DEFAULT_BUDGET_S)
        origin = "the default budget; set --time or --epochs to change it"
    else:
        origin = "--time"
    if config.time_budget is None or config.time_budget <= 0:
        raise UsageError(f"--time: expected a positive duration, got {config.time_budget} s")
    return config, (
        f"training for about {format_duration(config.time_budget)} ({origin}): the number of epochs is fitted "
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
    """The default-box layout of ``config.arch`` fitted to the boxes of the training split (the machinery of
    ``ssd encode --suggest``: same feature maps, sizes and aspect ratios searched for coverage at IoU 0.5), and one
    line with the coverage before and after. The start layout is kept when nothing beats it."""
    from .encode.coverage import gt_set_from_index
    from .encode.suggest import suggest_layout

    start = default_config(config.arch, num_classes=2).layout
    found = suggest_layout(gt_set_from_index(index, str(index.root), index.split), start, AUTO_ANCHOR_RATIOS)
    layout = found.layout if found.accepted else start
    line = (
        f"anchors fitted to the {found.gts} training boxes: share with a default box of IoU > 0.5 "
        f"{found.start_coverage:.1%} -> {max(found.coverage, found.start_coverage):.1%}, mean best IoU "
        f"{found.start_mean_iou:.3f} -> {max(found.mean_iou, found.start_mean_iou):.3f}"
    )
    return layout, line


def _check_options(config: TrainConfig) -> AnchorLayout | None:
    """Options that need no data, checked before anything is read or written; returns the anchor layout file's."""
    try:
        check_arch(config.arch)
    except ValueError as error:
        raise UsageError(f"model: {error}") from None
    check_optimizer(config.optimizer)
    if config.weights is not None:
        return None  # the detector's layout and input size come with its weights (engine/finetune.py)
    if is_auto_anchors(config.anchors):
        if config.data is None:
            raise UsageError("anchors 'auto' fits the default boxes to a data set's boxes; give the data to train on")
        layout = None  # fitted once the training split is open (fit_anchors)
    else:
        layout = load_layout_file(config.anchors) if config.anchors is not None else None
    size = (layout or default_config(config.arch, 2).layout).image_size
    if config.img_size is not None and config.img_size != size:
        raise UsageError(
            f"input size {config.img_size}: the anchor layout of {config.arch} is for {size} px inputs; "
            "give an anchor layout file for that size"
        )
    weights = config.backbone_weights
    if weights is not None and weights != IMAGENET and not Path(weights).is_file():
        raise CheckpointError(f"backbone weights: neither {IMAGENET!r} nor an existing file", path=weights)
    return layout


def _open_split(
    config: TrainConfig, data: Path, split: str | None, classes: Sequence[str] | None, default_split: str = "train"
) -> DatasetIndex:
    return open_index(
        data, split, config.data_format, classes, check_images=not config.verify_images, default_split=default_split
    )


def _open_data(config: TrainConfig, data: Path, emit: EventHandler) -> TrainData:
    """Index the training split and (when validation is on) the validation split, then decode every image once.

    A COCO file given as ``data`` is the training split only: validation then comes from ``val_data``, or is
    left out with a note. A validation split that cannot be opened is an error, not a silent run without
    validation; a split that a file cannot give is an error too.
    """
    train_index = _open_split(config, data, config.train_split, config.classes)
    classes = train_index.class_names[1:]
    val_index, notes = None, []
    if config.eval_every > 0:
        if is_split_file(data) and config.val_data is None and config.val_split is None:
            notes.append(
                f"no validation: {data.name} holds the {train_index.split!r} split only (give the validation "
                "file, or the data set root); best.pt follows the training loss"
            )
        else:
            source = config.val_data if config.val_data is not None else data
            try:
                val_index = _open_split(config, source, config.val_split, classes, default_split="val")
            except DataError as error:
                raise DataError(
                    f"validation split {config.val_split or 'val'!r}: {error.message} (choose another validation "
                    "split, or turn validation off)",
                    path=error.path,
                ) from None
    if not config.verify_images:
        return TrainData(train_index, val_index, notes=tuple(notes))
    cache = ImageCheckCache.load(config.out / IMAGE_CHECK_CACHE)
    verified = []
    for index in (train_index, val_index):
        if index is None:
            verified.append(None)
            continue
        task = f"check images ({index.split})"
        verified.append(
            verify_index(
                index,
                workers=config.workers,
                cache=cache,
                strict=config.strict,
                on_progress=lambda done, total, task=task: emit(TaskProgress(task, done, total)),
            )
        )
    return TrainData(verified[0], verified[1], cache, tuple(notes))


def _model_config(
    config: TrainConfig, class_names: tuple[str, ...], layout: AnchorLayout | None, checkpoint: Checkpoint | None
) -> ModelConfig:
    if checkpoint is not None:
        model_config = ModelConfig.from_dict(checkpoint.model_config)
        if tuple(checkpoint.class_names) != tuple(class_names):
            raise CheckpointError(
                f"classes {list(checkpoint.class_names[1:])} differ from the data's {list(class_names[1:])}",
                config.resume,
            )
        return model_config
    return default_config(config.arch, num_classes=len(class_names), layout=layout)


def _check_split_size(config: TrainConfig, index: DatasetIndex, processes: int, data: Path) -> None:
    """A split too small for one batch fails here, not as an empty epoch."""
    if len(index) < config.batch_size * processes:
        raise DataError(
            f"the {index.split!r} split has {len(index)} usable images, fewer than one batch "
            f"({config.batch_size} x {processes} processes); use a smaller batch size",
            data,
        )


def _check_batch_norm(config: TrainConfig, model: nn.Module) -> None:
    """BatchNorm cannot take its statistics from one image: fail here, not at the first step."""
    if config.batch_size == 1 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise UsageError(
            f"batch size 1: {config.arch} has BatchNorm layers, which cannot train on one image per batch; "
            "use a batch size of 2 or more"
        )


def _write_metrics_row(path: Path, row: dict[str, float]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in METRIC_COLUMNS})


def train(config: TrainConfig, on_event: EventHandler = ignore_events) -> TrainResult:
    """Train a model as ``config`` says; events report progress. Under torchrun, every rank calls this."""
    device = resolve_device(config.device)
    context = init_distributed(device.type)
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    emit = on_event if context.is_main else ignore_events
    board = TensorBoardLog() if config.tensorboard and context.is_main else None
    try:
        return _train(config, device, context, emit if board is None else both(emit, board))
    except Exception as error:
        # A process that fails reports its own error and leaves the group, which ends the collectives the others
        # wait in: they stop with one line pointing at that error instead of a backend message.
        if context.enabled and is_peer_failure(error):
            raise PeerProcessFailed(
                f"process {context.rank} of {context.world_size} stopped: another process of the run failed "
                "(its error is above)"
            ) from error
        raise
    finally:
        if board is not None:
            board.close()
        shutdown_distributed(context)


def _train(config: TrainConfig, device: torch.device, context: DistContext, emit: EventHandler) -> TrainResult:
    began = time.perf_counter()  # a time budget counts from here
    given = config
    config, checkpoint = _resolve_resume(config)
    if checkpoint is not None:
        ignored = resume_ignored(given, config)
        if ignored:
            emit(Message(f"resuming keeps the run's own settings; ignored: {', '.join(ignored)}", "warning"))
        saved_epochs = _config_from_dict(checkpoint.train_state["config"]).epochs
        if config.epochs is not None and saved_epochs is not None and config.epochs != saved_epochs:
            emit(Message(f"the schedule is rebuilt for {config.epochs} epochs (the run had {saved_epochs})"))
        if config.epochs is not None and checkpoint.epoch >= config.epochs and checkpoint.step_in_epoch == 0:
            emit(Message(f"the run has finished its {checkpoint.epoch} epochs; nothing to do (ask for more epochs to "
                         "train on)"))
            return TrainResult(None, config.resume, None, finished_already=True)
    if config.data is None and config.val_data is not None:
        raise UsageError("--val-data needs --data (the training data it validates)")
    config, length_line = _resolve_length(config)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(config.threads, config.workers))
    torch.manual_seed(config.seed)
    # Everything the user gave is checked before anything is written: no run folder, no generated data.
    layout_file = _check_options(config)
    data = config.data.resolve() if config.data is not None else None
    prepared = _open_data(config, data, emit) if data is not None else None
    class_names = prepared.train.class_names if prepared is not None else (BACKGROUND, *SYNTH_CLASSES)
    weights_note = anchors_note = None
    if checkpoint is None and is_auto_anchors(config.anchors) and prepared is not None:
        layout_file, anchors_note = fit_anchors(config, prepared.train)
    if checkpoint is None and config.weights is not None:
        model, weights_note = start_from_detector(config, class_names)
        config = replace(config, arch=model.config.arch)
    else:
        model_config = _model_config(config, class_names, layout_file, checkpoint)
        model = build_model(model_config, None if checkpoint else config.backbone_weights)
    model_config = model.config  # build_model settles choices such as reduced_tail; checkpoints store this
    _check_batch_norm(config, model)
    if prepared is not None:
        _check_split_size(config, prepared.train, context.world_size, data)

    run_dir = context.broadcast(fresh_run_dir(config.out) if context.is_main else None)
    if prepared is None:
        data = run_dir / "data"
        if context.is_main:
            write_synth(data, format="voc", images=config.synth_images, seed=config.seed)
        context.barrier()
        prepared = _open_data(config, data, emit)
        _check_split_size(config, prepared.train, context.world_size, data)
    elif prepared.cache is not None and context.is_main:
        prepared.cache.save()
    val_data = config.val_data.resolve() if config.val_data is not None else None
    config = replace(config, data=data, val_data=val_data)
    train_index, val_index = prepared.train, prepared.val
    for note in prepared.notes:
        emit(Message(note, "warning"))
    for note in (weights_note, anchors_note):
        if note is not None:
            emit(Message(note))
    for index in (train_index, val_index):
        summary = index.warnings.summary() if index is not None else None
        if summary:
            emit(Message(f"{index.split}: {summary}", "warning"))

    saved_state = (checkpoint.train_state or {}) if checkpoint is not None else {}
    if checkpoint is not None:
        # with EMA, model_state holds the average and the trained weights are in train_state["model"]
        model.load_state_dict(saved_state.get("model", checkpoint.model_state))
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    ema = ModelEMA(model, config.ema_decay, config.ema_tau) if config.ema else None
    if ema is not None and checkpoint is not None and "ema" in saved_state:
        ema.load_state_dict({**saved_state["ema"], "module": checkpoint.model_state})
    evaluated = ema.module if ema is not None else model  # what validation sees and checkpoints store
    net: torch.nn.Module = DistributedDataParallel(model) if context.enabled else model
    layout = model_config.layout
    anchors = default_boxes(layout, device=device)

    augmentation = build_transforms(
        layout.image_size, True, model_config.mean, model_config.std, config.zoom_out, config.iou_crop
    )
    dataset = DetectionDataset(
        train_index,
        layout.image_size,
        True,
        model_config.mean,
        model_config.std,
        transforms=augmentation,
        return_failures=True,
        seed=config.seed,
    )
    sampler = DistributedSampler(
        dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=config.seed, drop_last=True
    )
    resume_sampler = SkipFirst(sampler)  # a resumed epoch starts after the batches already trained
    loader_generator = torch.Generator()
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=resume_sampler,
        num_workers=config.workers,
        collate_fn=collate_detections,
        drop_last=True,
        pin_memory=device.type == "cuda",
        generator=loader_generator,
    )
    steps_per_epoch = len(loader)
    if config.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    # with a time budget, a provisional schedule until the first epoch has measured the speed
    planned: int | None = config.epochs
    schedule = WarmupCosine(
        total_steps=(planned * steps_per_epoch) if planned is not None else PROVISIONAL_STEPS,
        warmup_steps=config.warmup_steps,
    )

    lr = config.lr if config.lr is not None else default_lr(model_config.arch, config.optimizer)
    optimizer = build_optimizer(net, config.optimizer, lr, config.momentum, config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    start_epoch, skip_steps, global_step, best = 0, 0, 0, None
    if checkpoint is not None and checkpoint.train_state is not None:
        optimizer.load_state_dict(checkpoint.train_state["optimizer"])
        scheduler.load_state_dict(checkpoint.train_state["scheduler"])  # a fitted total_steps too
        scaler.load_state_dict(checkpoint.train_state["scaler"])
        start_epoch, skip_steps = checkpoint.epoch, checkpoint.step_in_epoch
        global_step, best = checkpoint.global_step, checkpoint.best_metric
        if planned is None and checkpoint.train_state.get("fitted"):
            planned = schedule.total_steps // steps_per_epoch
        if planned is not None and config.time_budget is None:
            schedule.total_steps = planned * steps_per_epoch  # the same, or rebuilt for a new number of epochs
        _restore_rng(checkpoint.train_state.get("rng"))
    clock = None
    if config.time_budget is not None:
        spent_before = float((checkpoint.train_state or {}).get("elapsed_s", 0.0)) if checkpoint else 0.0
        clock = BudgetClock(config.time_budget, spent_before + time.perf_counter() - began)

    result = TrainResult(run_dir, None, None)
    if context.is_main:
        (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    emit(RunStarted(run_dir, planned, steps_per_epoch, start_epoch, str(device), ()))
    emit(Message(length_line))

    def snapshot(epoch: int, step_in_epoch: int, sums: Tensor | None = None) -> Checkpoint:
        train_state: dict[str, Any] = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "config": config.to_dict(),
            "rng": _rng_state(),
        }
        if sums is not None:  # the loss sums of the epoch so far, for its metrics row when resumed
            train_state["epoch_sums"] = sums.tolist()
        if clock is not None:
            train_state["elapsed_s"] = clock.spent()
            train_state["fitted"] = planned is not None
        if ema is not None:  # model_state is the average; the trained weights and the EMA count go here
            train_state["model"] = model.state_dict()
            train_state["ema"] = {k: v for k, v in ema.state_dict().items() if k != "module"}
        return Checkpoint(
            model_config=model_config.to_dict(),
            class_names=train_index.class_names,
            category_ids=train_index.category_ids,
            model_state=evaluated.state_dict(),
            epoch=epoch,
            step_in_epoch=step_in_epoch,
            global_step=global_step,
            best_metric=best,
            train_state=train_state,
        )

    epoch = start_epoch
    step = 0
    sums = torch.zeros(2, dtype=torch.float64)  # loss parts summed over the epoch's steps
    pictures = RunPictures(run_dir, emit)
    stop = StopRequests()

    def stopping() -> bool:
        return context.any(stop.signal is not None)

    def stop_here(epoch_index: int, step_in_epoch: int, partial: Tensor | None) -> None:
        result.interrupted, result.signal = True, stop.signal
        if context.is_main:
            result.last_checkpoint = save_checkpoint(snapshot(epoch_index, step_in_epoch, partial), run_dir / "last.pt")
            emit(CheckpointSaved(result.last_checkpoint))

    with stop:
        try:
            while planned is None or epoch < planned:
                sampler.set_epoch(epoch)
                dataset.set_epoch(epoch)
                torch.manual_seed(_epoch_seed(config.seed, epoch))
                loader_generator.manual_seed(_epoch_seed(config.seed, epoch))
                net.train()
                started = time.perf_counter()
                first = skip_steps if epoch == start_epoch else 0
                sums = torch.zeros(2, dtype=torch.float64)
                if first and "epoch_sums" in saved_state:
                    sums += torch.tensor(saved_state["epoch_sums"], dtype=torch.float64)
                resume_sampler.skip = first * config.batch_size  # skipped samples are not even decoded
                batches = islice(loader, steps_per_epoch - first)
                step = first
                tick = time.perf_counter()
                if stopping():
                    stop_here(epoch, step, sums if step else None)
                    break

                def validate() -> None:
                    eval_started = time.perf_counter()
                    context.sync_buffers(evaluated)  # every shard with rank 0's statistics, as checkpoints hold
                    metrics, detections = evaluate_model(
                        evaluated,
                        val_index,
                        anchors,
                        device,
                        config.batch_size,
                        emit,
                        context.gather,
                        context.rank,
                        context.world_size,
                    )
                    row.update(metrics)
                    if context.is_main:
                        pictures.predictions(val_index, detections)
                    if clock is not None:
                        clock.add_eval(time.perf_counter() - eval_started)

                for batch in checked_batches(batches):
                    images = batch.images.to(device, non_blocking=True)
                    if device.type == "cuda":
                        images = images.contiguous(memory_format=torch.channels_last)
                    boxes = batch.boxes.to(device, non_blocking=True)
                    classes = batch.classes.to(device, non_blocking=True)
                    targets = encode(boxes, classes, anchors)
                    with torch.autocast(device.type, enabled=use_amp):
                        conf, loc = net(images)
                    loss = ssd_loss(conf.float(), loc.float(), targets.labels, targets.offsets)
                    if not bool(torch.isfinite(loss.total)):
                        lr_now = optimizer.param_groups[0]["lr"]
                        if context.is_main:  # the state before this step: the last finite one
                            result.last_checkpoint = save_checkpoint(snapshot(epoch, step, sums), run_dir / "last.pt")
                        raise TrainingDiverged(
                            f"non-finite loss at epoch {epoch + 1} step {step + 1} (lr {lr_now:.3g}); "
                            f"{run_dir / 'last.pt'} holds the last finite state; a lower learning rate may help"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss.total).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    if ema is not None:
                        ema.update(model)
                    step += 1
                    global_step += 1
                    parts = torch.stack((loss.conf.detach(), loss.loc.detach())).double().cpu()
                    sums += parts
                    now = time.perf_counter()
                    emit(
                        StepDone(
                            epoch + 1,
                            step,
                            steps_per_epoch,
                            float(parts[0]),
                            float(parts[1]),
                            optimizer.param_groups[0]["lr"],
                            images.shape[0] * context.world_size / max(now - tick, 1e-9),
                        )
                    )
                    tick = now
                    if stopping():
                        break
                if stop.signal is not None and step < steps_per_epoch:
                    stop_here(epoch, step, sums)
                    break
                done_steps = max(1, step)
                if clock is not None:
                    clock.add_train(time.perf_counter() - started, step - first)
                row: dict[str, float] = {
                    "epoch": epoch + 1,
                    "loss_conf": context.mean(float(sums[0]) / done_steps),
                    "loss_loc": context.mean(float(sums[1]) / done_steps),
                    "lr": optimizer.param_groups[0]["lr"],
                }
                row["loss"] = row["loss_conf"] + row["loss_loc"]
                is_last = epoch + 1 == planned
                measure = clock is not None and clock.evals == 0 and config.eval_every > 0  # time one validation
                if val_index is not None and ((epoch + 1) % max(config.eval_every, 1) == 0 or is_last or measure):
                    validate()
                if clock is not None and not is_last:
                    # re-fit the schedule to the speed measured so far (rank 0's measurement). This epoch ran as
                    # not the last, so at least one more follows: the schedule always ends as planned, at worst
                    # one epoch past the budget when the machine slowed down.
                    fitted = context.broadcast(clock.fit(epoch + 1, steps_per_epoch, config.eval_every))
                    first_fit = planned is None
                    planned = max(fitted // steps_per_epoch, epoch + 2)
                    if first_fit:
                        emit(Message(f"schedule: {planned} epochs ({planned * steps_per_epoch} steps) fit into "
                                     f"{format_duration(clock.budget_s)} at {clock.train_s / max(clock.steps, 1):.2f} s "
                                     "per step"))
                    schedule.total_steps = planned * steps_per_epoch
                    emit(ScheduleFitted(planned, steps_per_epoch))
                saving = time.perf_counter()
                row["seconds"] = saving - started
                # One rule for best.pt: the highest validation VOC07 mAP@0.5 (a NaN one, e.g. a split without
                # objects, never counts); without validation best.pt is a copy of last.pt.
                if val_index is not None:
                    score = row.get("map50")
                    improved = score is not None and math.isfinite(score) and (best is None or score > best)
                    if improved:
                        best = score
                else:
                    improved = True
                result.history.append(row)
                if context.is_main:
                    _write_metrics_row(run_dir / "metrics.csv", row)
                    result.last_checkpoint = save_checkpoint(snapshot(epoch + 1, 0), run_dir / "last.pt")
                    emit(CheckpointSaved(result.last_checkpoint))
                    if improved:
                        result.best_checkpoint = save_checkpoint(snapshot(epoch + 1, 0), run_dir / "best.pt")
                        emit(CheckpointSaved(result.best_checkpoint, best=True))
                if context.is_main:
                    pictures.curves(result.history)
                if clock is not None:
                    clock.add_train(time.perf_counter() - saving, 0)
                emit(EpochDone(epoch + 1, row))
                epoch += 1
                more = planned is None or epoch < planned
                if more and stopping():  # at an epoch boundary: last.pt of this epoch is already written
                    result.interrupted, result.signal = True, stop.signal
                    break
        except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread's handlers
            result.interrupted, result.signal = True, signal.SIGINT
            if context.is_main:
                result.last_checkpoint = save_checkpoint(snapshot(epoch, step, sums), run_dir / "last.pt")
                emit(CheckpointSaved(result.last_checkpoint))
        except DataError:
            # A file changed during the run: keep the progress so far, then report the file.
            if context.is_main:
                result.last_checkpoint = save_checkpoint(snapshot(epoch, step, sums), run_dir / "last.pt")
                emit(CheckpointSaved(result.last_checkpoint))
            raise
        except RuntimeError as error:
            # Another process failed while this one waited in a training step's gradient exchange: the weights
            # are those of the steps completed, so the progress so far is kept as for a stop request.
            if context.is_main and is_peer_failure(error) and step < steps_per_epoch:
                result.last_checkpoint = save_checkpoint(snapshot(epoch, step, sums), run_dir / "last.pt")
                emit(CheckpointSaved(result.last_checkpoint))
            raise
    if context.enabled and not result.interrupted:
        _check_ranks_agree(model, context)
    return result


def _check_ranks_agree(model: nn.Module, context: DistContext) -> None:
    """DDP keeps every process's weights equal; a difference means the processes fell out of step (a bug, or a
    rank that trained other batches), and the run says so instead of saving one rank's weights as the model."""
    with torch.no_grad():
        checksum = float(sum(p.double().sum() for p in model.parameters()))
    sums = context.gather(checksum)
    if max(sums) - min(sums) > 1e-6 * max(1.0, abs(sums[0])):
        raise SsdcliError(f"the {len(sums)} processes ended with different weights (checksums {sums})")
