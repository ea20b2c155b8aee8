"""Progress events: how long-running engine work reports to whoever renders it (the CLI, a notebook, a test)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ssdcli.errors import name_parameters

#: The engine's log: every event handled by :func:`log_event` as a standard ``logging`` record, for notebooks and
#: services (the CLI renders the events itself). Quiet unless the application configures logging.
LOGGER = logging.getLogger("ssdcli")
LOGGER.addHandler(logging.NullHandler())
#: Marks the records :func:`log_event` makes, so that a handler can tell them from the engine's other warnings.
EVENT = {"ssdcli_event": True}


@dataclass(frozen=True)
class RunStarted:
    run_dir: Path
    epochs: int | None  # None: fitted to a time budget after the first epoch (then ScheduleFitted)
    steps_per_epoch: int
    start_epoch: int
    device: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScheduleFitted:
    """A time-budget run's schedule, fitted (after each epoch) to the measured speed."""

    epochs: int
    steps_per_epoch: int


@dataclass(frozen=True)
class StepDone:
    """One training step done. The losses are read from the device every few steps only (one wait for the
    device each time, :mod:`ssdcli.engine.train.window`): None on the steps between."""

    epoch: int  # 1-based
    step: int  # 1-based within the epoch
    steps: int
    loss_conf: float | None
    loss_loc: float | None
    lr: float
    images_per_s: float


@dataclass(frozen=True)
class EpochDone:
    epoch: int
    metrics: dict[str, float] = field(default_factory=dict)
    best: Path | None = None  # best.pt, when this epoch's weights were saved there as the best so far


@dataclass(frozen=True)
class EvalProgress:
    done: int  # images processed so far
    total: int


@dataclass(frozen=True)
class TaskProgress:
    """Progress of a preparation step before training, e.g. ``task="check images"``."""

    task: str
    done: int
    total: int


@dataclass(frozen=True)
class CheckpointSaved:
    path: Path
    best: bool = False


@dataclass(frozen=True)
class Message:
    """A line worth showing the user (e.g. data warnings); ``level`` is "info" or "warning"."""

    text: str
    level: str = "info"


Event = (
    RunStarted | ScheduleFitted | StepDone | EpochDone | EvalProgress | TaskProgress | CheckpointSaved | Message
)
EventHandler = Callable[[Event], None]


def ignore_events(event: Event) -> None:
    """The default handler: drop every event."""


def log_event(event: Event) -> None:
    """``event`` as a record of the ``ssdcli`` logger: messages at their level, a run's start and every epoch's
    metrics row at INFO, checkpoints at DEBUG; step and progress events are not logged."""
    if isinstance(event, Message):
        LOGGER.log(logging.WARNING if event.level == "warning" else logging.INFO, name_parameters(event.text), extra=EVENT)
    elif isinstance(event, RunStarted):
        LOGGER.info("run %s started at epoch %d on %s", event.run_dir, event.start_epoch + 1, event.device, extra=EVENT)
    elif isinstance(event, EpochDone):
        row = ", ".join(f"{k} {v:.4g}" for k, v in event.metrics.items() if k != "epoch")
        LOGGER.info("epoch %d: %s", event.epoch, row, extra=EVENT)
    elif isinstance(event, CheckpointSaved):
        LOGGER.debug("saved %s", event.path, extra=EVENT)
