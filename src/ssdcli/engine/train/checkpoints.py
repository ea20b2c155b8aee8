"""A run's checkpoints: what they hold (the exact position, optimizer, schedule, EMA, random generator states),
when they are written, and the one rule for ``best.pt``. Only rank 0 writes."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from ssdcli.engine.checkpoint import Checkpoint, save_checkpoint
from ssdcli.engine.events import CheckpointSaved, EventHandler
from ssdcli.engine.train.rng import rng_state
from ssdcli.models.spec import ModelSpec

if TYPE_CHECKING:
    from ssdcli.engine.train.run import Run

LAST = "last.pt"
BEST = "best.pt"


class CheckpointPolicy:
    """``last.pt`` after every epoch and wherever a run stops (a signal, a non-finite loss, a file that broke):
    the exact position, so that a resume trains exactly the batches that come next. ``best.pt`` by one rule: the
    highest validation VOC07 mAP@0.5 over the classes with enough validation objects to be measured
    (``select_map50``: a class with a handful of objects swings its AP by chance; a NaN score, e.g. a split without
    objects, never counts); without validation it is a copy of ``last.pt``."""

    def __init__(self, run: Run, emit: EventHandler) -> None:
        self.run = run
        self.emit = emit
        self.held: Checkpoint | None = None

    def hold(self, epoch: int, step_in_epoch: int, sums: Tensor | None = None) -> None:
        """Keep a copy of the run at this position in memory (rank 0; on the device, no host synchronisation):
        the training loop checks its losses every few steps, and a non-finite one writes this copy, the last
        position whose losses were all finite, as ``last.pt`` (:meth:`save_held`)."""
        if self.run.context.is_main:
            self.held = copy.deepcopy(self.snapshot(epoch, step_in_epoch, sums))

    def save_held(self) -> Path | None:
        """Write the copy of :meth:`hold` as ``last.pt`` (rank 0; None elsewhere or without one)."""
        if self.held is None or not self.run.context.is_main:
            return None
        path = save_checkpoint(self.held, self.run.run_dir / LAST)
        self.emit(CheckpointSaved(path))
        return path

    def snapshot(self, epoch: int, step_in_epoch: int, sums: Tensor | None = None) -> Checkpoint:
        """The run at ``epoch`` (completed epochs) and ``step_in_epoch``; ``sums``: the epoch's loss sums so far,
        for its metrics row when resumed."""
        run = self.run
        train_state: dict[str, Any] = {
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(),
            "config": run.config.to_dict(),
            "rng": rng_state(),
            "stale_validations": run.patience.stale,
        }
        if sums is not None:
            train_state["epoch_sums"] = sums.tolist()
        if run.clock is not None:
            train_state["elapsed_s"] = run.clock.spent()
            train_state["fitted"] = run.planned is not None
        if run.ema is not None:  # model_state is the average; the trained weights and the EMA count go here
            train_state["model"] = run.model.state_dict()
            train_state["ema"] = {k: v for k, v in run.ema.state_dict().items() if k != "module"}
        return Checkpoint(
            spec=ModelSpec(run.model_config, tuple(run.train_index.class_names), tuple(run.train_index.category_ids)),
            model_state=run.evaluated.state_dict(),
            epoch=epoch,
            step_in_epoch=step_in_epoch,
            global_step=run.global_step,
            best_metric=run.best,
            train_state=train_state,
        )

    def save_last(self, epoch: int, step_in_epoch: int, sums: Tensor | None = None) -> Path | None:
        """Write ``last.pt`` at this position (rank 0; None elsewhere)."""
        if not self.run.context.is_main:
            return None
        path = save_checkpoint(self.snapshot(epoch, step_in_epoch, sums), self.run.run_dir / LAST)
        self.emit(CheckpointSaved(path))
        return path

    def improved(self, row: dict[str, float]) -> bool:
        """Whether this epoch's row beats the best so far (and becomes it)."""
        if self.run.val_index is None:
            return True
        score = row.get("select_map50")
        better = score is not None and math.isfinite(score) and (self.run.best is None or score > self.run.best)
        if better:
            self.run.best = score
        return better

    def save_epoch(self, epochs_done: int, improved: bool) -> tuple[Path | None, Path | None]:
        """``last.pt`` after a completed epoch, and ``best.pt`` when it improved (rank 0)."""
        if not self.run.context.is_main:
            return None, None
        last = self.save_last(epochs_done, 0)
        best = None
        if improved:
            best = save_checkpoint(self.snapshot(epochs_done, 0), self.run.run_dir / BEST)
            self.emit(CheckpointSaved(best, best=True))
        return last, best
