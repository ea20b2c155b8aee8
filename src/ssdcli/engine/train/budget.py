"""Training for a wall-clock budget (``ssd train --time``): how many epochs fit, from the measured speed.

The run measures the seconds per optimizer step (data loading and checkpoint writing included) and per
validation pass as it goes, and after every epoch re-fits the total number of steps of the warm-up + cosine
schedule so that the remaining epochs, with their validations, end within the budget. The schedule is whole
epochs, so the last epoch ends with the learning rate at its final value.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

#: The budget of ``ssd train`` when neither ``--epochs`` nor ``--time`` is given (seconds).
DEFAULT_BUDGET_S = 10 * 60.0


def validations(epochs_done: int, epochs: int, eval_every: int) -> int:
    """Validation passes of epochs ``epochs_done + 1 .. epochs``: every ``eval_every``-th and the last (0: none)."""
    if eval_every <= 0 or epochs <= epochs_done:
        return 0
    periodic = epochs // eval_every - epochs_done // eval_every
    return periodic + (0 if epochs % eval_every == 0 else 1)


def remaining_seconds(
    epochs: int,
    epochs_done: int,
    steps_per_epoch: int,
    seconds_per_step: float,
    seconds_per_eval: float,
    eval_every: int,
) -> float:
    """Expected seconds from the end of epoch ``epochs_done`` to the end of epoch ``epochs``."""
    train = (epochs - epochs_done) * steps_per_epoch * seconds_per_step
    return train + validations(epochs_done, epochs, eval_every) * seconds_per_eval


def fit_total_steps(
    budget_s: float,
    spent_s: float,
    epochs_done: int,
    steps_per_epoch: int,
    seconds_per_step: float,
    seconds_per_eval: float = 0.0,
    eval_every: int = 0,
) -> int:
    """Total optimizer steps (whole epochs) of a schedule that ends within ``budget_s``.

    Args:
        budget_s: the wall-clock budget of the whole run.
        spent_s: seconds already used (setup and the ``epochs_done`` epochs finished so far).
        epochs_done: epochs finished; the result never plans fewer.
        steps_per_epoch: optimizer steps per epoch.
        seconds_per_step: measured seconds per step, loading and checkpointing included.
        seconds_per_eval: measured seconds of one validation pass.
        eval_every: validate every N epochs and after the last (0: never).

    Returns:
        ``epochs * steps_per_epoch`` for the largest ``epochs >= epochs_done`` whose remaining epochs fit into
        ``budget_s - spent_s``; at least one epoch.
    """
    if steps_per_epoch < 1 or seconds_per_step <= 0:
        raise ValueError(f"need steps_per_epoch >= 1 and seconds_per_step > 0, got {steps_per_epoch}, {seconds_per_step}")
    left = budget_s - spent_s
    per_epoch = steps_per_epoch * seconds_per_step + (seconds_per_eval / eval_every if eval_every > 0 else 0.0)
    epochs = epochs_done + max(0, math.floor(left / per_epoch))  # a first guess, then exact
    while epochs > epochs_done and remaining_seconds(
        epochs, epochs_done, steps_per_epoch, seconds_per_step, seconds_per_eval, eval_every
    ) > left:
        epochs -= 1
    while remaining_seconds(
        epochs + 1, epochs_done, steps_per_epoch, seconds_per_step, seconds_per_eval, eval_every
    ) <= left:
        epochs += 1
    return max(epochs, epochs_done, 1) * steps_per_epoch


def format_duration(seconds: float) -> str:
    """``90`` -> ``"1 min 30 s"``, ``5400`` -> ``"1 h 30 min"``, ``20`` -> ``"20 s"``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min" + (f" {rest} s" if rest else "")
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


class BudgetClock:
    """Measures a run against its budget: seconds per step and per validation pass, and the time spent.

    ``spent_before`` is the time a resumed run had used already.
    """

    def __init__(self, budget_s: float, spent_before: float = 0.0) -> None:
        self.budget_s = budget_s
        self._start = time.perf_counter() - spent_before
        self.train_s = 0.0
        self.steps = 0
        self.eval_s = 0.0
        self.evals = 0

    def spent(self) -> float:
        return time.perf_counter() - self._start

    def add_train(self, seconds: float, steps: int) -> None:
        self.train_s += seconds
        self.steps += steps

    def add_eval(self, seconds: float) -> None:
        self.eval_s += seconds
        self.evals += 1

    def fit(self, epochs_done: int, steps_per_epoch: int, eval_every: int) -> int:
        """Total steps of the schedule from the speed measured so far (see :func:`fit_total_steps`)."""
        per_step = self.train_s / max(self.steps, 1)
        per_eval = self.eval_s / self.evals if self.evals else 0.0
        return fit_total_steps(
            self.budget_s, self.spent(), epochs_done, steps_per_epoch, max(per_step, 1e-9), per_eval, eval_every
        )


@dataclass
class Patience:
    """The stop rule of ``patience``: a run ends after ``limit`` validations in a row without a better validation
    mAP (``limit`` None: never). ``stale`` counts them; checkpoints save it, so that a resumed run continues the
    count."""

    limit: int | None
    stale: int = 0

    def record(self, improved: bool) -> None:
        """Count one validation, which found a better mAP or did not."""
        self.stale = 0 if improved else self.stale + 1

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.stale >= self.limit

    def line(self, epochs_done: int, best: float | None) -> str:
        """What ended the run, for its log."""
        best_text = f"{best:.4f}" if best is not None else "none"
        return (
            f"stopped early after epoch {epochs_done} (`patience` {self.limit}): no better validation mAP@0.5 in the "
            f"last {self.stale} validations; best {best_text}, in best.pt"
        )


def end_line(epochs_done: int, time_budget: float | None) -> str:
    """What ended a run that trained its whole schedule, for its log."""
    if time_budget is not None:
        return f"the run ended after {epochs_done} epochs, the schedule fitted to `time_budget` {format_duration(time_budget)}"
    return f"the run ended after its {epochs_done} epochs (`epochs`)"
