"""Rendering engine events with Rich: progress bars for training and evaluation."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ssdcli.engine.events import (
    EpochDone,
    EvalProgress,
    Event,
    Message,
    RunStarted,
    ScheduleFitted,
    StepDone,
    TaskProgress,
)

from .render import as_flags, live_display, print_warning


class TrainProgress:
    """An event handler that draws epoch/step progress with loss parts, lr, images/s and ETA."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            disable=not live_display(console),
        )
        self.task: TaskID | None = None
        self.eval_task: TaskID | None = None
        self.prepare_tasks: dict[str, TaskID] = {}

    def __enter__(self) -> TrainProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.console.print(f"run folder: [bold]{event.run_dir}[/]  device: {event.device}")
            for note in event.notes:
                print_warning(note)
            total = event.epochs * event.steps_per_epoch if event.epochs is not None else None
            self.task = self.progress.add_task("train", total=total, stats="", completed=event.start_epoch * event.steps_per_epoch)
        elif isinstance(event, ScheduleFitted) and self.task is not None:
            self.progress.update(self.task, total=event.epochs * event.steps_per_epoch)
        elif isinstance(event, StepDone) and self.task is not None and event.loss_conf is None:
            self.progress.update(self.task, advance=1)  # the figures shown are those of the last checked step
        elif isinstance(event, StepDone) and self.task is not None:
            stats = (
                f"epoch {event.epoch} step {event.step}/{event.steps}  conf {event.loss_conf:.3f}  "
                f"loc {event.loss_loc:.3f}  lr {event.lr:.2e}  {event.images_per_s:.0f} img/s"
            )
            self.progress.update(self.task, advance=1, stats=stats)
        elif isinstance(event, TaskProgress):
            if event.task not in self.prepare_tasks:
                self.prepare_tasks[event.task] = self.progress.add_task(event.task, total=event.total, stats="")
            self.progress.update(self.prepare_tasks[event.task], completed=event.done)
        elif isinstance(event, EvalProgress):
            if self.eval_task is None:
                self.eval_task = self.progress.add_task("validate", total=event.total, stats="")
            self.progress.update(self.eval_task, completed=event.done)
            if event.done >= event.total:
                self.progress.remove_task(self.eval_task)
                self.eval_task = None
        elif isinstance(event, EpochDone):
            shown = {key: value for key, value in event.metrics.items() if key != "epoch"}
            if abs(shown.get("select_map50", 0.0) - shown.get("map50", 0.0)) < 5e-5:  # equal as printed: said once
                shown.pop("select_map50", None)
            parts = [f"{key} {value:.4f}" for key, value in shown.items()]
            mark = "  (new best)" if event.best is not None else ""
            self.progress.console.print(f"epoch {event.epoch}: " + "  ".join(parts) + mark)
        elif isinstance(event, Message):
            if event.level == "warning":
                print_warning(event.text)
            else:
                self.progress.console.print(as_flags(event.text))


class EvalProgressBar:
    """An event handler for inference over a data set."""

    def __init__(self, console: Console, description: str = "detect") -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=console,
            disable=not live_display(console),
        )
        self.description = description
        self.task: TaskID | None = None

    def __enter__(self) -> EvalProgressBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: Event) -> None:
        if isinstance(event, EvalProgress):
            if self.task is None:
                self.task = self.progress.add_task(self.description, total=event.total)
            self.progress.update(self.task, completed=event.done)
        elif isinstance(event, Message) and event.level == "warning":
            print_warning(event.text)


class BenchmarkProgress:
    """An event handler drawing the overall progress, the current step (export, time) and detection over the
    split."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console,
            disable=not live_display(console),
        )  # fmt: skip
        self.tasks: dict[str, TaskID] = {}
        self.detect: TaskID | None = None

    def __enter__(self) -> BenchmarkProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: Event) -> None:
        if isinstance(event, TaskProgress):
            if event.task not in self.tasks:
                self.tasks[event.task] = self.progress.add_task(event.task, total=event.total)
            self.progress.update(self.tasks[event.task], completed=event.done)
            if event.task != "benchmark" and event.done >= event.total:
                self.progress.remove_task(self.tasks.pop(event.task))
        elif isinstance(event, EvalProgress):
            if self.detect is None:
                self.detect = self.progress.add_task("detect", total=event.total)
            self.progress.update(self.detect, completed=event.done)
            if event.done >= event.total:
                self.progress.remove_task(self.detect)
                self.detect = None
        elif isinstance(event, Message) and event.level == "warning":
            print_warning(event.text)
