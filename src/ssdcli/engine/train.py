"""The training loop behind ``ssd train``: data, model, schedule, AMP, DDP, checkpoints, metrics.csv."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from ssdcli.config import TrainConfig
from ssdcli.core.anchors import AnchorLayout, default_boxes
from ssdcli.core.loss import ssd_loss
from ssdcli.core.matching import encode
from ssdcli.data.collate import collate_detections
from ssdcli.data.dataset import DetectionDataset, open_index
from ssdcli.data.records import DatasetIndex
from ssdcli.data.synth import write_synth
from ssdcli.data.transforms import build_transforms
from ssdcli.errors import CheckpointError, DataError, UsageError
from ssdcli.models.build import build_model
from ssdcli.models.config import ModelConfig, default_config

from .budget import DEFAULT_BUDGET_S, BudgetClock, format_duration
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .device import cpu_threads, resolve_device
from .distributed import DistContext, init_distributed, shutdown_distributed
from .ema import ModelEMA
from .events import (
    CheckpointSaved,
    EpochDone,
    EventHandler,
    Message,
    RunStarted,
    ScheduleFitted,
    StepDone,
    ignore_events,
)
from .rundir import fresh_run_dir
from .schedule import WarmupCosine, build_optimizer, default_lr
from .tensorboard_log import TensorBoardLog, both
from .validation import evaluate_model

#: Schedule length of a time-budget run until the first epoch has measured the speed (then re-fitted).
PROVISIONAL_STEPS = 1_000_000

METRIC_COLUMNS = ("epoch", "loss", "loss_conf", "loss_loc", "lr", "map50", "coco_ap", "seconds")


@dataclass
class TrainResult:
    run_dir: Path
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    history: list[dict[str, float]] = field(default_factory=list)
    interrupted: bool = False


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
    }
    restored = TrainConfig(**{**_config_from_dict(saved).__dict__, **keep})
    return restored, checkpoint


def _config_from_dict(data: dict[str, Any]) -> TrainConfig:
    paths = {"data", "anchors", "out", "resume"}
    values = {k: (Path(v) if k in paths and v is not None else v) for k, v in data.items()}
    if values.get("classes") is not None:
        values["classes"] = tuple(values["classes"])
    return TrainConfig(**values)


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


def _prepare_data(config: TrainConfig, run_dir: Path, context: DistContext) -> Path:
    if config.data is not None:
        return config.data
    data_dir = run_dir / "data"
    if context.is_main:
        write_synth(data_dir, format="voc", images=config.synth_images, seed=config.seed)
    context.barrier()
    return data_dir


def _open_indexes(config: TrainConfig, data: Path) -> tuple[DatasetIndex, DatasetIndex | None, list[str]]:
    notes: list[str] = []
    train_index = open_index(data, config.train_split, config.data_format, config.classes)
    classes = train_index.class_names[1:]
    val_index = None
    if config.eval_every > 0:
        try:
            val_index = open_index(data, config.val_split, config.data_format, classes)
        except DataError as error:
            notes.append(f"no validation ({error}); best.pt follows the training loss")
    return train_index, val_index, notes


def _model_config(config: TrainConfig, index: DatasetIndex, checkpoint: Checkpoint | None) -> ModelConfig:
    if checkpoint is not None:
        model_config = ModelConfig.from_dict(checkpoint.model_config)
        if tuple(checkpoint.class_names) != tuple(index.class_names):
            raise CheckpointError(
                f"classes {list(checkpoint.class_names[1:])} differ from the data's {list(index.class_names[1:])}",
                config.resume,
            )
        return model_config
    layout = load_layout_file(config.anchors) if config.anchors is not None else None
    try:
        model_config = default_config(config.arch, num_classes=len(index.class_names), layout=layout)
    except ValueError as error:
        raise UsageError(f"--model: {error}") from None
    size = model_config.layout.image_size
    if config.img_size is not None and config.img_size != size:
        raise UsageError(
            f"--img-size {config.img_size}: the anchor layout of {config.arch} is for {size} px inputs; "
            "pass --anchors FILE with a layout for that size"
        )
    return model_config


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
    finally:
        if board is not None:
            board.close()
        shutdown_distributed(context)


def _train(config: TrainConfig, device: torch.device, context: DistContext, emit: EventHandler) -> TrainResult:
    began = time.perf_counter()  # a time budget counts from here
    config, checkpoint = _resolve_resume(config)
    config, length_line = _resolve_length(config)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(config.threads, config.workers))
    torch.manual_seed(config.seed)
    run_dir = context.broadcast(fresh_run_dir(config.out) if context.is_main else None)
    data = _prepare_data(config, run_dir, context)
    config = replace(config, data=data.resolve())
    train_index, val_index, notes = _open_indexes(config, data)
    for index in (train_index, val_index):
        summary = index.warnings.summary() if index is not None else None
        if summary:
            emit(Message(f"{index.split}: {summary}", "warning"))

    model_config = _model_config(config, train_index, checkpoint)
    model = build_model(model_config, None if checkpoint else config.backbone_weights)
    model_config = model.config  # build_model settles choices such as reduced_tail; checkpoints store this
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
        train_index, layout.image_size, True, model_config.mean, model_config.std, transforms=augmentation
    )
    if len(dataset) < config.batch_size * context.world_size:
        raise DataError(
            f"the {config.train_split!r} split has {len(dataset)} images, fewer than one batch "
            f"({config.batch_size} x {context.world_size} processes); lower --batch-size",
            data,
        )
    sampler = DistributedSampler(
        dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=config.seed, drop_last=True
    )
    loader_generator = torch.Generator()
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
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
    clock = None
    if config.time_budget is not None:
        spent_before = float((checkpoint.train_state or {}).get("elapsed_s", 0.0)) if checkpoint else 0.0
        clock = BudgetClock(config.time_budget, spent_before + time.perf_counter() - began)

    result = TrainResult(run_dir, None, None)
    if context.is_main:
        (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    emit(RunStarted(run_dir, planned, steps_per_epoch, start_epoch, str(device), tuple(notes)))
    emit(Message(length_line))

    def snapshot(epoch: int, step_in_epoch: int) -> Checkpoint:
        train_state: dict[str, Any] = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "config": config.to_dict(),
        }
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
    try:
        while planned is None or epoch < planned:
            sampler.set_epoch(epoch)
            torch.manual_seed(_epoch_seed(config.seed, epoch))
            loader_generator.manual_seed(_epoch_seed(config.seed, epoch))
            net.train()
            started = time.perf_counter()
            sums = torch.zeros(2, dtype=torch.float64)
            first = skip_steps if epoch == start_epoch else 0
            batches = islice(loader, first, steps_per_epoch)
            step = first
            tick = time.perf_counter()

            def validate() -> None:
                eval_started = time.perf_counter()
                if context.is_main:
                    row.update(evaluate_model(evaluated, val_index, anchors, device, config.batch_size, emit))
                context.barrier()
                if clock is not None:
                    clock.add_eval(time.perf_counter() - eval_started)

            for batch in batches:
                images = batch.images.to(device, non_blocking=True)
                if device.type == "cuda":
                    images = images.contiguous(memory_format=torch.channels_last)
                boxes = batch.boxes.to(device, non_blocking=True)
                classes = batch.classes.to(device, non_blocking=True)
                targets = encode(boxes, classes, anchors)
                with torch.autocast(device.type, enabled=use_amp):
                    conf, loc = net(images)
                loss = ssd_loss(conf.float(), loc.float(), targets.labels, targets.offsets)
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
            done_steps = max(1, step - first)
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
            score = row.get("map50", -row["loss"])
            improved = best is None or score > best
            if improved:
                best = score
            result.history.append(row)
            if context.is_main:
                _write_metrics_row(run_dir / "metrics.csv", row)
                result.last_checkpoint = save_checkpoint(snapshot(epoch + 1, 0), run_dir / "last.pt")
                emit(CheckpointSaved(result.last_checkpoint))
                if improved:
                    result.best_checkpoint = save_checkpoint(snapshot(epoch + 1, 0), run_dir / "best.pt")
                    emit(CheckpointSaved(result.best_checkpoint, best=True))
            if clock is not None:
                clock.add_train(time.perf_counter() - saving, 0)
            emit(EpochDone(epoch + 1, row))
            epoch += 1
    except KeyboardInterrupt:
        result.interrupted = True
        if context.is_main:
            result.last_checkpoint = save_checkpoint(snapshot(epoch, step), run_dir / "last.pt")
            emit(CheckpointSaved(result.last_checkpoint))
    return result
