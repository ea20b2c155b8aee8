"""A training run built and ready for its next step (:func:`build_run`): from the plan of its checked inputs
(:mod:`ssdcli.engine.train.plan`), the run folder, the model (with EMA and DDP), the data pipeline, the optimizer
and schedule, and a resumed run's saved state."""

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
from ssdcli.data.records import DatasetIndex
from ssdcli.data.sampling import SkipFirst
from ssdcli.data.synth import write_synth
from ssdcli.data.transforms import build_transforms
from ssdcli.engine.checkpoint import Checkpoint, restoring
from ssdcli.engine.device import mixed_precision
from ssdcli.engine.events import EventHandler, Message, RunStarted
from ssdcli.engine.train.budget import BudgetClock, Patience
from ssdcli.engine.train.distributed import DistContext
from ssdcli.engine.train.ema import ModelEMA
from ssdcli.engine.train.freeze import frozen_line
from ssdcli.engine.train.inputs import TrainData, check_split_size, open_data
from ssdcli.engine.train.plan import TrainingPlan, plan_training, saved_patience
from ssdcli.engine.train.rng import restore_rng
from ssdcli.engine.train.schedule import WarmupCosine, build_optimizer
from ssdcli.models.spec import ModelConfig
from ssdcli.models.zoo import default_lr

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
    """Check everything the user gave (:func:`plan_training`), then build the run (None: a resumed run that has
    nothing left to train).

    Nothing is written before every input has been checked: no run folder, no generated data. ``began`` is when
    the command started (a time budget counts from there)."""
    plan = plan_training(config, device, context.world_size, emit)
    if plan is None:
        return None
    run_dir = context.broadcast(fresh_run_dir(plan.config.runtime.out) if context.is_main else None)
    assert run_dir is not None  # every process has the main process's folder
    # Ctrl-C before the first step: the folder holds nothing to resume from (at most generated data); removed.
    with removed_on_interrupt(run_dir) if context.is_main else nullcontext():
        config, train_data = _settle_data(plan, run_dir, context, emit)
        _report_inputs(plan, train_data, emit)
        run = _assemble(plan, config, train_data, device, context, run_dir)
        if config.optim.time_budget is not None:
            checkpoint = plan.checkpoint
            spent_before = float((checkpoint.train_state or {}).get("elapsed_s", 0.0)) if checkpoint else 0.0
            run.clock = BudgetClock(config.optim.time_budget, spent_before + time.perf_counter() - began)
        if context.is_main:
            write_json(run_dir / "config.json", config.to_dict())
        emit(RunStarted(run_dir, run.planned, run.steps_per_epoch, run.start_epoch, str(device), ()))
        emit(Message(plan.length_line))
        return run


def _settle_data(
    plan: TrainingPlan, run_dir: Path, context: DistContext, emit: EventHandler
) -> tuple[TrainConfig, TrainData]:
    """The run's data, with the settings that name it resolved (the run's config.json holds absolute paths): the
    planned splits (their image checks saved), or the synthetic data set generated into ``run_dir``."""
    config, train_data = plan.config, plan.train_data
    data = config.data.data
    if train_data is None or data is None:
        data = run_dir / "data"
        if context.is_main:
            write_synth(data, format="voc", images=config.data.synth_images, seed=config.runtime.seed)
        context.barrier()
        train_data = open_data(config, data, emit)
        check_split_size(config, train_data.train, context.world_size, data)
    elif train_data.cache is not None and context.is_main:
        train_data.cache.save()
    val_data = config.data.val_data.resolve() if config.data.val_data is not None else None
    return config.updated(data=data.resolve(), val_data=val_data), train_data


def _report_inputs(plan: TrainingPlan, train_data: TrainData, emit: EventHandler) -> None:
    """What the user should know of the data and the model before the run starts."""
    for warning in train_data.notes:
        emit(Message(warning, "warning"))
    freeze_note = frozen_line(plan.model, plan.frozen) if plan.frozen else None
    for note in (*plan.notes, freeze_note):
        if note is not None:
            emit(Message(note))
    for index in (train_data.train, train_data.val):
        summary = index.warnings.summary() if index is not None else None
        if index is not None and summary:
            emit(Message(f"{index.split}: {summary}", "warning"))


@dataclass(frozen=True)
class PlacedModel:
    """The model on its device: ``model`` (the trained weights), ``net`` (``model`` or its DDP wrapper), ``ema``."""

    model: nn.Module
    net: nn.Module
    ema: ModelEMA | None


@dataclass(frozen=True)
class DataPipeline:
    """The training split as batches: augmented samples, the sampler (shuffled per epoch, a resumed epoch starting
    after the batches already trained) and the loader with its own generator."""

    dataset: DetectionDataset
    sampler: DistributedSampler
    resume_sampler: SkipFirst
    loader: DataLoader
    loader_generator: torch.Generator
    steps_per_epoch: int


@dataclass(frozen=True)
class Optimisation:
    """The optimizer, its learning-rate schedule and loss scaling. ``planned``: epochs, None until a time budget's
    first epoch has measured the speed (the schedule is provisional until then)."""

    schedule: WarmupCosine
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    use_amp: bool
    planned: int | None


def _assemble(
    plan: TrainingPlan,
    config: TrainConfig,
    train_data: TrainData,
    device: torch.device,
    context: DistContext,
    run_dir: Path,
) -> Run:
    """The model on its device (with EMA and DDP), the data pipeline, optimizer and schedule; a resumed run's
    weights, optimizer, schedule, EMA and random generator states restored."""
    model_config = plan.model.config  # build_model settles choices such as reduced_tail; checkpoints store this
    placed = _place_model(plan.model, plan.checkpoint, config, device, context)
    pipeline = _data_pipeline(train_data.train, model_config, config, device, context)
    optimisation = _optimisation(placed.net, model_config, config, device, pipeline.steps_per_epoch)
    anchors = default_boxes(model_config.layout, device=device)  # [A, 4]
    run = Run(
        config=config,
        device=device,
        context=context,
        run_dir=run_dir,
        model_config=model_config,
        model=placed.model,
        net=placed.net,
        ema=placed.ema,
        train_index=train_data.train,
        val_index=train_data.val,
        anchors=anchors,
        geometry=default_box_geometry(anchors),
        dataset=pipeline.dataset,
        sampler=pipeline.sampler,
        resume_sampler=pipeline.resume_sampler,
        loader=pipeline.loader,
        loader_generator=pipeline.loader_generator,
        steps_per_epoch=pipeline.steps_per_epoch,
        schedule=optimisation.schedule,
        optimizer=optimisation.optimizer,
        scheduler=optimisation.scheduler,
        scaler=optimisation.scaler,
        use_amp=optimisation.use_amp,
        clock=None,
        planned=optimisation.planned,
        frozen=plan.frozen,
    )
    if plan.checkpoint is not None and plan.checkpoint.train_state is not None:
        _restore(run, plan.checkpoint)
    else:
        run.patience = Patience(config.optim.patience)
    return run


def _place_model(
    model: nn.Module, checkpoint: Checkpoint | None, config: TrainConfig, device: torch.device, context: DistContext
) -> PlacedModel:
    """``model`` with a resumed run's weights (and EMA), on ``device``, wrapped for DDP when distributed."""
    saved_state: dict[str, Any] = (checkpoint.train_state or {}) if checkpoint is not None else {}
    if checkpoint is not None:
        # with EMA, model_state holds the average and the trained weights are in train_state["model"]
        with restoring(config.runtime.resume):
            model.load_state_dict(saved_state.get("model", checkpoint.model_state))
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optim = config.optim
    ema = ModelEMA(model, optim.ema_decay, optim.ema_tau) if optim.ema else None
    if ema is not None and checkpoint is not None and "ema" in saved_state:
        with restoring(config.runtime.resume):
            ema.load_state_dict({**saved_state["ema"], "module": checkpoint.model_state})
    net: nn.Module = DistributedDataParallel(model) if context.enabled else model
    return PlacedModel(model, net, ema)


def _data_pipeline(
    index: DatasetIndex, model_config: ModelConfig, config: TrainConfig, device: torch.device, context: DistContext
) -> DataPipeline:
    """The augmented training split, sharded across processes, in batches of ``batch_size``."""
    runtime, size = config.runtime, model_config.layout.image_size
    augmentation = build_transforms(
        size, True, model_config.mean, model_config.std, config.augment.zoom_out, config.augment.iou_crop
    )
    dataset = DetectionDataset(
        index,
        size,
        True,
        model_config.mean,
        model_config.std,
        transforms=augmentation,
        return_failures=True,
        seed=runtime.seed,
        mosaic=config.augment.mosaic,
    )
    sampler: DistributedSampler[int] = DistributedSampler(
        dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=runtime.seed, drop_last=True
    )
    resume_sampler = SkipFirst(sampler)
    loader_generator = torch.Generator()
    loader = DataLoader(
        dataset,
        batch_size=config.optim.batch_size,
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
    return DataPipeline(dataset, sampler, resume_sampler, loader, loader_generator, steps_per_epoch)


def _optimisation(
    net: nn.Module, model_config: ModelConfig, config: TrainConfig, device: torch.device, steps_per_epoch: int
) -> Optimisation:
    """The optimizer of ``net`` with warm-up and cosine decay; with a time budget, a provisional schedule until the
    first epoch has measured the speed."""
    optim = config.optim
    planned: int | None = optim.epochs
    schedule = WarmupCosine(
        total_steps=(planned * steps_per_epoch) if planned is not None else PROVISIONAL_STEPS,
        warmup_steps=optim.warmup_steps,
    )
    lr = optim.lr if optim.lr is not None else default_lr(model_config.arch, optim.optimizer)
    optimizer = build_optimizer(net, optim.optimizer, lr, optim.momentum, optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    precision = mixed_precision(config.runtime.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == torch.float16)
    return Optimisation(schedule, optimizer, scheduler, scaler, precision is not None, planned)


def _restore(run: Run, checkpoint: Checkpoint) -> None:
    """A resumed run's optimizer, schedule, loss scaling, position, best score, patience and random generators, as
    ``checkpoint`` saved them."""
    state: dict[str, Any] = checkpoint.train_state or {}
    with restoring(run.config.runtime.resume):
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])  # a fitted total_steps too
    if state["scaler"]:  # empty when saved without loss scaling (float32, bfloat16)
        run.scaler.load_state_dict(state["scaler"])
    run.start_epoch, run.skip_steps = checkpoint.epoch, checkpoint.step_in_epoch
    run.global_step, run.best = checkpoint.global_step, checkpoint.best_metric
    run.saved_sums = state.get("epoch_sums")
    run.patience = saved_patience(run.config, checkpoint)
    if run.planned is None and state.get("fitted"):
        run.planned = run.schedule.total_steps // run.steps_per_epoch
    if run.planned is not None and run.config.optim.time_budget is None:
        run.schedule.total_steps = run.planned * run.steps_per_epoch  # the same, or rebuilt for a new number of epochs
    restore_rng(state.get("rng"))
