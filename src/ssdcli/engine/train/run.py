"""A training run built and ready for its next step (:func:`build_run`): the checked inputs, the run folder, the
model (with EMA and DDP), the data pipeline, the optimizer and schedule, and a resumed run's saved state."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from ssdcli.config import TrainConfig
from ssdcli.core.anchors import default_boxes
from ssdcli.core.matching import DefaultBoxGeometry, default_box_geometry
from ssdcli.data.collate import collate_detections
from ssdcli.data.dataset import DetectionDataset
from ssdcli.data.files import fresh_run_dir, removed_on_interrupt, write_json
from ssdcli.data.records import BACKGROUND, DatasetIndex
from ssdcli.data.sampling import SkipFirst
from ssdcli.data.synth import SYNTH_CLASSES, write_synth
from ssdcli.data.transforms import build_transforms
from ssdcli.engine.checkpoint import Checkpoint, restoring
from ssdcli.engine.device import cpu_threads, mixed_precision
from ssdcli.engine.events import EventHandler, Message, RunStarted
from ssdcli.engine.train.budget import BudgetClock, Patience
from ssdcli.engine.train.rng import restore_rng
from ssdcli.engine.train.distributed import DistContext
from ssdcli.engine.train.ema import ModelEMA
from ssdcli.engine.train.finetune import start_from_detector
from ssdcli.engine.train.freeze import freeze, frozen_line
from ssdcli.engine.train.inputs import (
    check_batch_norm,
    check_options,
    check_split_size,
    fit_anchors,
    is_auto_anchors,
    model_config_for,
    open_data,
    resolve_length,
    resolve_resume,
    resume_ignored,
)
from ssdcli.engine.train.schedule import WarmupCosine, build_optimizer, default_lr
from ssdcli.errors import UsageError
from ssdcli.models.build import build_model
from ssdcli.models.config import ModelConfig

#: Schedule length of a time-budget run until the first epoch has measured the speed (then re-fitted).
PROVISIONAL_STEPS = 1_000_000


@dataclass
class Run:
    """What the training loop reads and updates. ``model`` holds the trained weights, ``net`` is ``model`` or its
    DDP wrapper, ``evaluated`` is what validation sees and checkpoints store (the EMA when there is one)."""

    config: TrainConfig
    device: torch.device
    context: DistContext
    run_dir: Path
    model_config: ModelConfig
    model: nn.Module
    net: nn.Module
    ema: ModelEMA | None
    train_index: DatasetIndex
    val_index: DatasetIndex | None
    anchors: Tensor  # [A, 4] default boxes, cx cy w h in [0, 1]
    geometry: DefaultBoxGeometry  # what matching needs of ``anchors``, computed once
    dataset: DetectionDataset
    sampler: DistributedSampler
    resume_sampler: SkipFirst  # a resumed epoch starts after the batches already trained
    loader: DataLoader
    loader_generator: torch.Generator
    steps_per_epoch: int
    schedule: WarmupCosine
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    use_amp: bool
    clock: BudgetClock | None
    planned: int | None  # epochs; None until a time budget's first epoch has measured the speed
    start_epoch: int = 0
    skip_steps: int = 0  # steps of ``start_epoch`` trained before a resume
    global_step: int = 0
    best: float | None = None  # the best validation mAP@0.5 so far
    saved_sums: list[float] | None = None  # the resumed epoch's loss sums so far
    patience: Patience = field(default_factory=lambda: Patience(None))  # validations without a better mAP
    frozen: tuple[nn.Module, ...] = ()  # backbone stages kept as they are (engine/train/freeze.py)

    @property
    def evaluated(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model


def build_run(
    config: TrainConfig, device: torch.device, context: DistContext, emit: EventHandler, began: float
) -> Run | None:
    """Check everything the user gave, then build the run (None: a resumed run that has nothing left to train).

    Nothing is written before every input has been checked: no run folder, no generated data. ``began`` is when
    the command started (a time budget counts from there)."""
    given = config
    config, checkpoint = resolve_resume(config)
    if checkpoint is not None:
        ignored = resume_ignored(given, config)
        if ignored:
            emit(Message(f"resuming keeps the run's own settings; ignored: {', '.join(ignored)}", "warning"))
        saved_epochs = TrainConfig.from_dict(checkpoint.train_state["config"]).optim.epochs
        epochs = config.optim.epochs
        if epochs is not None and saved_epochs is not None and epochs != saved_epochs:
            emit(Message(f"the schedule is rebuilt for {epochs} epochs (the run had {saved_epochs})"))
        if epochs is not None and checkpoint.epoch >= epochs and checkpoint.step_in_epoch == 0:
            emit(Message(f"the run has finished its {checkpoint.epoch} epochs; nothing to do (ask for more epochs to "
                         "train on)"))
            return None
        if _saved_patience(config, checkpoint).exhausted and checkpoint.step_in_epoch == 0:
            emit(Message(f"the run stopped early after epoch {checkpoint.epoch} (`patience` "
                         f"{config.optim.patience}); nothing to do"))
            return None
    if config.data.data is None and config.data.val_data is not None:
        raise UsageError("`val_data` needs `data` (the training data it validates)")
    config, length_line = resolve_length(config)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(config.runtime.threads, config.runtime.workers))
    torch.manual_seed(config.runtime.seed)
    layout_file = check_options(config)
    data = config.data.data  # as given, so that messages name it so; the run's config.json holds it resolved
    prepared = open_data(config, data, emit) if data is not None else None
    class_names = prepared.train.class_names if prepared is not None else (BACKGROUND, *SYNTH_CLASSES)
    weights_note = anchors_note = None
    if checkpoint is None and is_auto_anchors(config.model.anchors) and prepared is not None:
        layout_file, anchors_note = fit_anchors(config, prepared.train)
    if checkpoint is None and config.model.weights is not None:
        model, weights_note = start_from_detector(config.model, class_names)
        config = config.updated(arch=model.config.arch)
    else:
        model = build_model(
            model_config_for(config, class_names, layout_file, checkpoint),
            None if checkpoint else config.model.backbone_weights,
        )
    model_config = model.config  # build_model settles choices such as reduced_tail; checkpoints store this
    check_batch_norm(config, model)
    frozen = freeze(model, config.model.freeze)
    if prepared is not None:
        check_split_size(config, prepared.train, context.world_size, data)

    run_dir = context.broadcast(fresh_run_dir(config.runtime.out) if context.is_main else None)
    # Ctrl-C before the first step: the folder holds nothing to resume from (at most generated data); removed.
    with removed_on_interrupt(run_dir) if context.is_main else nullcontext():
        if prepared is None:
            data = run_dir / "data"
            if context.is_main:
                write_synth(data, format="voc", images=config.data.synth_images, seed=config.runtime.seed)
            context.barrier()
            prepared = open_data(config, data, emit)
            check_split_size(config, prepared.train, context.world_size, data)
        elif prepared.cache is not None and context.is_main:
            prepared.cache.save()
        val_data = config.data.val_data.resolve() if config.data.val_data is not None else None
        config = config.updated(data=data.resolve(), val_data=val_data)
        for note in prepared.notes:
            emit(Message(note, "warning"))
        freeze_note = frozen_line(model, frozen) if frozen else None
        for note in (weights_note, anchors_note, freeze_note):
            if note is not None:
                emit(Message(note))
        for index in (prepared.train, prepared.val):
            summary = index.warnings.summary() if index is not None else None
            if summary:
                emit(Message(f"{index.split}: {summary}", "warning"))

        run = _assemble(config, device, context, run_dir, model, model_config, prepared.train, prepared.val, checkpoint)
        run.frozen = frozen
        if config.optim.time_budget is not None:
            spent_before = float((checkpoint.train_state or {}).get("elapsed_s", 0.0)) if checkpoint else 0.0
            run.clock = BudgetClock(config.optim.time_budget, spent_before + time.perf_counter() - began)
        if context.is_main:
            write_json(run_dir / "config.json", config.to_dict())
        emit(RunStarted(run_dir, run.planned, run.steps_per_epoch, run.start_epoch, str(device), ()))
        emit(Message(length_line))
        return run


def _assemble(
    config: TrainConfig,
    device: torch.device,
    context: DistContext,
    run_dir: Path,
    model: nn.Module,
    model_config: ModelConfig,
    train_index: DatasetIndex,
    val_index: DatasetIndex | None,
    checkpoint: Checkpoint | None,
) -> Run:
    """The model on its device (with EMA and DDP), the data pipeline, optimizer and schedule; a resumed run's
    weights, optimizer, schedule, EMA and random generator states restored."""
    optim, runtime = config.optim, config.runtime
    saved_state: dict[str, Any] = (checkpoint.train_state or {}) if checkpoint is not None else {}
    if checkpoint is not None:
        # with EMA, model_state holds the average and the trained weights are in train_state["model"]
        with restoring(config.runtime.resume):
            model.load_state_dict(saved_state.get("model", checkpoint.model_state))
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    ema = ModelEMA(model, optim.ema_decay, optim.ema_tau) if optim.ema else None
    if ema is not None and checkpoint is not None and "ema" in saved_state:
        with restoring(config.runtime.resume):
            ema.load_state_dict({**saved_state["ema"], "module": checkpoint.model_state})
    net: nn.Module = DistributedDataParallel(model) if context.enabled else model
    layout = model_config.layout

    augmentation = build_transforms(
        layout.image_size, True, model_config.mean, model_config.std, config.augment.zoom_out, config.augment.iou_crop
    )
    dataset = DetectionDataset(
        train_index,
        layout.image_size,
        True,
        model_config.mean,
        model_config.std,
        transforms=augmentation,
        return_failures=True,
        seed=runtime.seed,
    )
    sampler = DistributedSampler(
        dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=runtime.seed, drop_last=True
    )
    resume_sampler = SkipFirst(sampler)
    loader_generator = torch.Generator()
    loader = DataLoader(
        dataset,
        batch_size=optim.batch_size,
        sampler=resume_sampler,
        num_workers=runtime.workers,
        collate_fn=collate_detections,
        drop_last=True,
        pin_memory=device.type == "cuda",
        generator=loader_generator,
    )
    steps_per_epoch = len(loader)
    if runtime.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, runtime.max_steps_per_epoch)
    # with a time budget, a provisional schedule until the first epoch has measured the speed
    planned: int | None = optim.epochs
    schedule = WarmupCosine(
        total_steps=(planned * steps_per_epoch) if planned is not None else PROVISIONAL_STEPS,
        warmup_steps=optim.warmup_steps,
    )
    lr = optim.lr if optim.lr is not None else default_lr(model_config.arch, optim.optimizer)
    optimizer = build_optimizer(net, optim.optimizer, lr, optim.momentum, optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    use_amp = mixed_precision(runtime.amp, device) is not None
    scaler = torch.amp.GradScaler(device.type, enabled=mixed_precision(runtime.amp, device) == torch.float16)
    anchors = default_boxes(layout, device=device)  # [A, 4]
    run = Run(
        config, device, context, run_dir, model_config, model, net, ema, train_index, val_index,
        anchors, default_box_geometry(anchors), dataset, sampler, resume_sampler, loader, loader_generator,
        steps_per_epoch, schedule, optimizer, scheduler, scaler, use_amp, None, planned,
    )  # fmt: skip
    if checkpoint is not None and checkpoint.train_state is not None:
        with restoring(config.runtime.resume):
            optimizer.load_state_dict(checkpoint.train_state["optimizer"])
            scheduler.load_state_dict(checkpoint.train_state["scheduler"])  # a fitted total_steps too
        if checkpoint.train_state["scaler"]:  # empty when saved without loss scaling (float32, bfloat16)
            scaler.load_state_dict(checkpoint.train_state["scaler"])
        run.start_epoch, run.skip_steps = checkpoint.epoch, checkpoint.step_in_epoch
        run.global_step, run.best = checkpoint.global_step, checkpoint.best_metric
        run.saved_sums = saved_state.get("epoch_sums")
        run.patience = _saved_patience(config, checkpoint)
        if run.planned is None and checkpoint.train_state.get("fitted"):
            run.planned = schedule.total_steps // steps_per_epoch
        if run.planned is not None and optim.time_budget is None:
            schedule.total_steps = run.planned * steps_per_epoch  # the same, or rebuilt for a new number of epochs
        restore_rng(checkpoint.train_state.get("rng"))
    else:
        run.patience = Patience(optim.patience)
    return run


def _saved_patience(config: TrainConfig, checkpoint: Checkpoint) -> Patience:
    """The patience count where ``checkpoint`` left it."""
    return Patience(config.optim.patience, int((checkpoint.train_state or {}).get("stale_validations", 0)))
