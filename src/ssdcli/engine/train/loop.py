"""The training loop behind ``ssd train``, in the shape of torchvision's references: :func:`train` builds the run
(:mod:`.run`), then for each epoch :func:`train_one_epoch`, :func:`validate`, the metrics row and the
checkpoints (:class:`~ssdcli.engine.train.checkpoints.CheckpointPolicy`); stop requests, a non-finite loss and a
file that breaks end it with the progress kept in ``last.pt``."""

from __future__ import annotations

import csv
import io
import math
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import torch
from torch import Tensor, nn

from ssdcli.config import TrainConfig
from ssdcli.core.loss import ssd_loss
from ssdcli.core.matching import encode
from ssdcli.data.collate import checked_batches
from ssdcli.data.files import write_atomic
from ssdcli.engine.device import mixed_precision, resolve_device
from ssdcli.engine.evaluate.validation import detect_for_validation, evaluate_detections
from ssdcli.engine.events import (
    EpochDone,
    EventHandler,
    Message,
    ScheduleFitted,
    StepDone,
    ignore_events,
    log_event,
)
from ssdcli.engine.train.budget import end_line, format_duration
from ssdcli.engine.train.checkpoints import CheckpointPolicy
from ssdcli.engine.train.distributed import DistContext, init_distributed, is_peer_failure, shutdown_distributed
from ssdcli.engine.train.freeze import keep_frozen
from ssdcli.engine.train.interrupts import StopRequests
from ssdcli.engine.train.mlflow_log import MlflowLog
from ssdcli.engine.train.recipe_rule import tiling_line
from ssdcli.engine.train.run import Run, build_run
from ssdcli.engine.train.run_plots import RunPictures
from ssdcli.engine.train.tensorboard_log import TensorBoardLog, both
from ssdcli.engine.train.window import LossWindow, first_non_finite
from ssdcli.errors import DataError, PeerProcessFailed, SsdcliError, TrainingDiverged

METRIC_COLUMNS = ("epoch", "loss", "loss_conf", "loss_loc", "lr", "map50", "coco_ap", "select_map50", "seconds")


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
    stopped_early: bool = False  # ended by ``patience``


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def _write_metrics(path: Path, rows: list[dict[str, float]]) -> None:
    """``metrics.csv``: a header and one row per epoch of ``rows``, written atomically."""
    stream = io.StringIO(newline="")
    writer = csv.DictWriter(stream, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: row.get(k, "") for k in METRIC_COLUMNS} for row in rows)
    write_atomic(path, stream.getvalue())


def train(config: TrainConfig, on_event: EventHandler = ignore_events) -> TrainResult:
    """Train a model as ``config`` says; events report progress. Under torchrun, every rank calls this."""
    device = resolve_device(config.runtime.device)
    context = init_distributed(device.type)
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    emit = both(on_event, log_event) if context.is_main else ignore_events
    board = TensorBoardLog() if config.runtime.tensorboard and context.is_main else None
    tracker = MlflowLog(config.runtime.mlflow) if config.runtime.mlflow is not None and context.is_main else None
    for handler in (board, tracker):
        emit = emit if handler is None else both(emit, handler)
    try:
        return _train(config, device, context, emit)
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
        for handler in (board, tracker):
            if handler is not None:
                handler.close()
        shutdown_distributed(context)


@dataclass
class Progress:
    """Where the loop is: ``epoch`` (completed epochs), ``step`` (steps of this epoch done) and the epoch's loss
    sums so far (conf, loc)."""

    epoch: int
    step: int = 0
    sums: Tensor = field(default_factory=lambda: torch.zeros(2, dtype=torch.float64))


def _train(config: TrainConfig, device: torch.device, context: DistContext, emit: EventHandler) -> TrainResult:
    began = time.perf_counter()  # a time budget counts from here
    run = build_run(config, device, context, emit, began)
    if run is None:
        return TrainResult(None, config.runtime.resume, None, finished_already=True)
    result = TrainResult(run.run_dir, None, None)
    checkpoints = CheckpointPolicy(run, emit)
    pictures = RunPictures(run.run_dir, emit)
    progress = Progress(run.start_epoch)
    stop = StopRequests()

    def stopping() -> bool:
        return context.any(stop.signal is not None)

    def stop_here(partial: Tensor | None) -> None:
        result.interrupted, result.signal = True, stop.signal
        result.last_checkpoint = checkpoints.save_last(progress.epoch, progress.step, partial)

    with stop:
        try:
            while run.planned is None or progress.epoch < run.planned:
                first = run.skip_steps if progress.epoch == run.start_epoch else 0
                batches = _start_epoch(run, progress, first)
                started = time.perf_counter()
                if stopping():
                    stop_here(progress.sums if progress.step else None)
                    break
                train_one_epoch(run, batches, progress, checkpoints, stopping, emit)
                if stop.signal is not None and progress.step < run.steps_per_epoch:
                    stop_here(progress.sums)
                    break
                if run.clock is not None:
                    run.clock.add_train(time.perf_counter() - started, progress.step - first)
                row = _epoch_row(run, progress)
                is_last = progress.epoch + 1 == run.planned
                eval_every = config.runtime.eval_every
                measure = run.clock is not None and run.clock.evals == 0 and eval_every > 0  # time one validation
                every = (progress.epoch + 1) % max(eval_every, 1) == 0
                validated = run.val_index is not None and (every or is_last or measure)
                if validated:
                    validate(run, row, pictures, emit)
                if run.clock is not None and not is_last:
                    _fit_schedule(run, progress.epoch, emit)
                saving = time.perf_counter()
                row["seconds"] = saving - started
                improved = checkpoints.improved(row)
                if validated:
                    run.patience.record(improved)
                result.history.append(row)
                last, best = checkpoints.save_epoch(progress.epoch + 1, improved)
                result.last_checkpoint = last or result.last_checkpoint
                result.best_checkpoint = best or result.best_checkpoint
                if context.is_main:  # a row only for an epoch whose checkpoints are written
                    _write_metrics(run.run_dir / "metrics.csv", result.history)
                    pictures.curves(result.history)
                if run.clock is not None:
                    run.clock.add_train(time.perf_counter() - saving, 0)
                emit(EpochDone(progress.epoch + 1, row, best))
                progress.epoch += 1
                more = run.planned is None or progress.epoch < run.planned
                if more and stopping():  # at an epoch boundary: last.pt of this epoch is already written
                    result.interrupted, result.signal = True, stop.signal
                    break
                if more and run.patience.exhausted:
                    result.stopped_early = True
                    emit(Message(run.patience.line(progress.epoch, run.best)))
                    break
        except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread's handlers
            result.interrupted, result.signal = True, signal.SIGINT
            result.last_checkpoint = checkpoints.save_last(progress.epoch, progress.step, progress.sums)
        except DataError:
            # A file changed during the run: keep the progress so far, then report the file.
            result.last_checkpoint = checkpoints.save_last(progress.epoch, progress.step, progress.sums)
            raise
        except RuntimeError as error:
            # Another process failed while this one waited in a training step's gradient exchange: the weights
            # are those of the steps completed, so the progress so far is kept as for a stop request.
            if is_peer_failure(error) and progress.step < run.steps_per_epoch:
                result.last_checkpoint = checkpoints.save_last(progress.epoch, progress.step, progress.sums)
            raise
    if context.enabled and not result.interrupted:
        _check_ranks_agree(run.model, context)
    if not result.interrupted and not result.stopped_early:
        emit(Message(end_line(progress.epoch, run.config.optim.time_budget)))
    if not result.interrupted and context.is_main:
        advice = tiling_line(run.train_index, run.model_config.layout.image_size)
        if advice is not None:
            emit(Message(advice))
    return result


def _start_epoch(run: Run, progress: Progress, first: int) -> Iterable:
    """Seed the epoch (samplers, augmentation, dropout) and return its batches from step ``first`` on; the
    skipped samples are not even decoded."""
    seed = _epoch_seed(run.config.runtime.seed, progress.epoch)
    run.sampler.set_epoch(progress.epoch)
    run.dataset.set_epoch(progress.epoch)
    run.dataset.mosaic = run.config.augment.mosaic_at(progress.epoch, run.planned)  # workers start each epoch anew
    torch.manual_seed(seed)
    run.loader_generator.manual_seed(seed)
    run.net.train()
    keep_frozen(run.frozen)
    progress.sums = torch.zeros(2, dtype=torch.float64)
    if first and run.saved_sums is not None:
        progress.sums += torch.tensor(run.saved_sums, dtype=torch.float64)
    run.resume_sampler.skip = first * run.config.optim.batch_size
    progress.step = first
    return islice(run.loader, run.steps_per_epoch - first)


def train_one_epoch(
    run: Run,
    batches: Iterable,
    progress: Progress,
    checkpoints: CheckpointPolicy,
    stopping: Callable[[], bool],
    emit: EventHandler,
) -> None:
    """Train on ``batches``, one optimizer step each, updating ``progress``; returns early when ``stopping()``.

    The batches were checked where they entered (the collate), so matching and loss skip their input checks,
    and the losses stay on the device between checks (:mod:`.window`): every ``CHECK_EVERY`` steps and at the
    epoch's last step, one host synchronisation reads them, a non-finite one stops the run (``last.pt`` then
    holds the state of the check before, the last one whose losses were all finite), and the epoch's loss sums
    and the reported figures are updated. Stop requests are looked at after every step in a single process and
    at each check under DDP (a collective, on every rank together)."""
    device, context, optimizer = run.device, run.context, run.optimizer
    amp_dtype = mixed_precision(run.use_amp, device)
    window = LossWindow(device)
    checkpoints.hold(progress.epoch, progress.step, progress.sums)
    tick = time.perf_counter()
    try:
        for batch in checked_batches(batches):
            images = batch.images.to(device, non_blocking=True)  # [B, 3, S, S]
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            boxes = batch.boxes.to(device, non_blocking=True)  # [B, G, 4] xyxy in [0, 1], padded
            classes = batch.classes.to(device, non_blocking=True)  # [B, G], -1 for padding
            targets = encode(boxes, classes, run.geometry, checked=False)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                conf, loc = run.net(images)  # [B, A, C], [B, A, 4]
            loss = ssd_loss(conf.float(), loc.float(), targets.labels, targets.offsets, checked=False)
            optimizer.zero_grad(set_to_none=True)
            run.scaler.scale(loss.total).backward()
            run.scaler.step(optimizer)
            run.scaler.update()
            run.scheduler.step()
            if run.ema is not None:
                run.ema.update(run.model)
            window.add(loss.conf, loss.loc)
            progress.step += 1
            run.global_step += 1
            checked = window.full or progress.step == run.steps_per_epoch
            loss_conf, loss_loc = _check_losses(run, progress, checkpoints, window) if checked else (None, None)
            now = time.perf_counter()
            lr_now = optimizer.param_groups[0]["lr"]
            speed = images.shape[0] * context.world_size / max(now - tick, 1e-9)
            emit(StepDone(progress.epoch + 1, progress.step, run.steps_per_epoch, loss_conf, loss_loc, lr_now, speed))
            tick = now
            if (checked or not context.enabled) and stopping():
                if len(window):
                    _check_losses(run, progress, checkpoints, window)
                return
    finally:
        if len(window):  # left on an error or an interrupt: the steps done still count in the epoch's sums
            _add_sums(progress, window.take())


def _add_sums(progress: Progress, rows: list[tuple[float, float]]) -> None:
    for row in rows:  # one step at a time, in order: the same sums as adding after every step
        progress.sums += torch.tensor(row, dtype=torch.float64)


def _check_losses(
    run: Run, progress: Progress, checkpoints: CheckpointPolicy, window: LossWindow
) -> tuple[float, float]:
    """Read the window's losses (one host synchronisation), add them to the epoch's sums and return the last
    step's (conf, loc); a non-finite one writes the last checked state as last.pt and raises TrainingDiverged."""
    rows = window.take()
    bad = first_non_finite(rows)
    if bad is not None:
        held = checkpoints.held
        checkpoints.save_held()
        where = f" (epoch {held.epoch + 1} step {held.step_in_epoch})" if held is not None else ""
        raise TrainingDiverged(
            f"non-finite loss at epoch {progress.epoch + 1} step {progress.step - len(rows) + bad + 1} "
            f"(lr {run.optimizer.param_groups[0]['lr']:.3g}); {run.run_dir / 'last.pt'} holds the last checked "
            f"finite state{where}; a lower learning rate may help"
        )
    _add_sums(progress, rows)
    checkpoints.hold(progress.epoch, progress.step, progress.sums)
    return rows[-1]


def _epoch_row(run: Run, progress: Progress) -> dict[str, float]:
    """The epoch's metrics row: mean losses over its steps (over every process), the learning rate."""
    done_steps = max(1, progress.step)
    row: dict[str, float] = {
        "epoch": progress.epoch + 1,
        "loss_conf": run.context.mean(float(progress.sums[0]) / done_steps),
        "loss_loc": run.context.mean(float(progress.sums[1]) / done_steps),
        "lr": run.optimizer.param_groups[0]["lr"],
    }
    row["loss"] = row["loss_conf"] + row["loss_loc"]
    return row


def validate(run: Run, row: dict[str, float], pictures: RunPictures, emit: EventHandler) -> None:
    """Validation mAP@0.5 and COCO AP of what checkpoints store, into ``row``: every process scores its shard
    with rank 0's BatchNorm statistics, and the detections are gathered."""
    started = time.perf_counter()
    context = run.context
    assert run.val_index is not None  # validation runs only with a validation split
    context.sync_buffers(run.evaluated)
    detections = detect_for_validation(
        run.evaluated,
        run.val_index,
        run.anchors,
        run.device,
        run.config.optim.batch_size,
        emit,
        context.gather,
        context.rank,
        context.world_size,
    )
    row.update(evaluate_detections(run.val_index, detections).training_metrics())
    if context.is_main:
        pictures.predictions(run.val_index, detections)
    if run.clock is not None:
        run.clock.add_eval(time.perf_counter() - started)


def _fit_schedule(run: Run, epoch: int, emit: EventHandler) -> None:
    """Re-fit a time budget's schedule to the speed measured so far (rank 0's measurement). This epoch ran as not
    the last, so at least one more follows: the schedule always ends as planned, at worst one epoch past the
    budget when the machine slowed down."""
    clock, steps = run.clock, run.steps_per_epoch
    assert clock is not None
    fitted = run.context.broadcast(clock.fit(epoch + 1, steps, run.config.runtime.eval_every))
    first_fit = run.planned is None
    run.planned = max(fitted // steps, epoch + 2)
    if first_fit:
        emit(Message(f"schedule: {run.planned} epochs ({run.planned * steps} steps) fit into "
                     f"{format_duration(clock.budget_s)} at {clock.train_s / max(clock.steps, 1):.2f} s per step"))
    run.schedule.total_steps = run.planned * steps
    emit(ScheduleFitted(run.planned, steps))


def _check_ranks_agree(model: nn.Module, context: DistContext) -> None:
    """DDP keeps every process's weights equal; a difference means the processes fell out of step (a bug, or a
    rank that trained other batches), and the run says so instead of saving one rank's weights as the model."""
    with torch.no_grad():
        checksum = float(sum(p.double().sum() for p in model.parameters()))
    sums = context.gather(checksum)
    finite = all(math.isfinite(total) for total in sums)
    if not finite or max(sums) - min(sums) > 1e-6 * max(1.0, abs(sums[0])):
        raise SsdcliError(f"the {len(sums)} processes ended with different or non-finite weights (checksums {sums})")
