"""Progress events: how long-running engine work reports to whoever renders it (the CLI, a notebook, a test)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union


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


Event = Union[
    RunStarted, ScheduleFitted, StepDone, EpochDone, EvalProgress, TaskProgress, CheckpointSaved, Message
]
EventHandler = Callable[[Event], None]


def ignore_events(event: Event) -> None:
    """The default handler: drop every event."""
