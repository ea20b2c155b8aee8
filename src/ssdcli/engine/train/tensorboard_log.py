"""Optional TensorBoard logging of a training run, as an event handler beside the one that renders progress."""

from __future__ import annotations

from typing import Any

from ssdcli.engine.events import EpochDone, Event, EventHandler, RunStarted, StepDone
from ssdcli.errors import UsageError

#: Folder of the event files inside a run folder.
TENSORBOARD_DIR = "tensorboard"


class TensorBoardLog:
    """Writes training scalars to ``<run folder>/tensorboard``: per step ``train/loss_conf``, ``train/loss_loc``,
    ``train/lr``, ``train/images_per_s`` (x = global step), per epoch every column of metrics.csv as
    ``epoch/<name>`` (x = epoch). Needs the optional package ``tensorboard``; the check happens on construction,
    before any training starts."""

    def __init__(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError(
                "`tensorboard` needs the optional package tensorboard: pip install 'ssdcli[tensorboard]'"
            ) from None
        self._writer_class = SummaryWriter
        self._writer: Any = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.close()
            self._writer = self._writer_class(log_dir=str(event.run_dir / TENSORBOARD_DIR))
        elif self._writer is None:
            return
        elif isinstance(event, StepDone):
            step = (event.epoch - 1) * event.steps + event.step
            for name in ("loss_conf", "loss_loc", "lr", "images_per_s"):
                if getattr(event, name) is not None:  # losses: on the steps where they were read
                    self._writer.add_scalar(f"train/{name}", getattr(event, name), step)
        elif isinstance(event, EpochDone):
            for name, value in event.metrics.items():
                if name != "epoch":
                    self._writer.add_scalar(f"epoch/{name}", value, event.epoch)
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def both(first: EventHandler, second: EventHandler) -> EventHandler:
    """An event handler that passes every event to ``first``, then to ``second``."""

    def handle(event: Event) -> None:
        first(event)
        second(event)

    return handle
