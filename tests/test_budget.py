"""Fitting a schedule to a time budget (ssd train --time), and the durations the option accepts."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest

from ssdcli.cli.app import main
from ssdcli.cli.durations import parse_duration
from ssdcli.config import DataSettings, OptimSettings, RuntimeSettings, TrainConfig
from ssdcli.engine.checkpoint import load_checkpoint
from ssdcli.engine.events import Event, StepDone
from ssdcli.engine.train.budget import fit_total_steps, format_duration, validations
from ssdcli.engine.train.loop import train
from ssdcli.errors import UsageError


def test_validations_count_every_nth_epoch_and_the_last() -> None:
    assert validations(0, 5, 1) == 5
    assert validations(2, 7, 3) == 3  # epochs 3, 6 and the last, 7
    assert validations(0, 6, 3) == 2  # 3 and 6; the last is one of them
    assert validations(4, 4, 1) == 0
    assert validations(0, 10, 0) == 0


def test_fit_without_validation_is_whole_epochs_of_the_budget() -> None:
    # 100 s left, 10 steps of 1 s per epoch: 10 epochs; 1 s more spent: 9
    assert fit_total_steps(100.0, 0.0, 0, 10, 1.0) == 100
    assert fit_total_steps(100.0, 1.0, 0, 10, 1.0) == 90
    assert fit_total_steps(130.0, 30.0, 3, 10, 1.0) == 130  # 3 done + 10 more


def test_fit_counts_the_validations_still_to_come() -> None:
    # epochs of 10 s plus a 5 s validation each: 15 s per epoch, 100 s -> 6 epochs (90 s), a 7th would need 105
    assert fit_total_steps(100.0, 0.0, 0, 10, 1.0, seconds_per_eval=5.0, eval_every=1) == 60
    # validating every 2nd epoch and after the last: 7 epochs cost 70 + 4 * 5 = 90 s, 8 cost 80 + 4 * 5 = 100 s
    assert fit_total_steps(100.0, 0.0, 0, 10, 1.0, seconds_per_eval=5.0, eval_every=2) == 80


def test_fit_never_plans_fewer_than_done_nor_less_than_one_epoch() -> None:
    assert fit_total_steps(10.0, 50.0, 4, 10, 1.0, 5.0, 1) == 40  # over budget: stop after the epochs done
    assert fit_total_steps(1.0, 0.0, 0, 10, 1.0) == 10  # a budget shorter than an epoch still trains one
    with pytest.raises(ValueError):
        fit_total_steps(100.0, 0.0, 0, 10, 0.0)


def test_fit_scales_with_speed() -> None:
    slow = fit_total_steps(600.0, 20.0, 1, 9, 1.2, 4.0, 1)
    fast = fit_total_steps(600.0, 20.0, 1, 9, 0.6, 4.0, 1)
    assert slow == 9 * (1 + 580 // (9 * 1.2 + 4.0))
    assert fast == 9 * (1 + 580 // (9 * 0.6 + 4.0))


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90.0), ("20m", 1200.0), ("1.5h", 5400.0), ("45", 45.0), (" 2M ", 120.0)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5m", "10 minutes", "1.5.0h", "m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="--time"):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (20, 90, 900, 5400, 3600)] == ["20 s", "1 min 30 s", "15 min", "1 h 30 min", "1 h"]


def test_cli_refuses_a_bad_duration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--time", "soon", "--out", str(tmp_path), "--device", "cpu"]) == 2
    assert "--time" in capsys.readouterr().err


def test_epochs_and_time_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="choose one"):
        train(TrainConfig().updated(out=tmp_path, epochs=2, time_budget=60.0, synth_images=16, workers=0, device="cpu"))


def test_time_budget_run_stops_near_the_budget(tmp_path: Path) -> None:
    config = TrainConfig(
        data=DataSettings(synth_images=32),
        optim=OptimSettings(time_budget=20.0, batch_size=8),
        runtime=RuntimeSettings(out=tmp_path, workers=0, device="cpu", threads=1),
    )
    began = time.perf_counter()
    result = train(config)
    wall = time.perf_counter() - began
    with (result.run_dir / "metrics.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) >= 2  # more than the measuring epoch
    assert 14.0 < wall < 26.0  # the budget, give or take an epoch on a busy machine
    assert float(rows[-1]["lr"]) == pytest.approx(0.05 * 0.01, rel=1e-6)  # the schedule has ended
    assert rows[-1]["map50"] != ""  # the last epoch is validated


def test_resumed_budget_run_keeps_its_fitted_schedule(tmp_path: Path) -> None:
    class StopInSecondEpoch:
        def __call__(self, event: Event) -> None:
            if isinstance(event, StepDone) and (event.epoch, event.step) == (2, 1):
                raise KeyboardInterrupt

    quick = dict(synth_images=32, batch_size=8, workers=0, device="cpu", threads=1, arch="ssd_tiny")
    first = train(TrainConfig().updated(out=tmp_path / "a", time_budget=15.0, **quick), StopInSecondEpoch())
    assert first.interrupted and first.last_checkpoint is not None
    saved = load_checkpoint(first.last_checkpoint)
    assert saved.train_state is not None and saved.train_state["fitted"]
    assert 0.0 < saved.train_state["elapsed_s"] < 15.0
    steps_per_epoch = saved.global_step - 1  # stopped after the first step of epoch 2
    planned_steps = saved.train_state["scheduler"]["lr_lambdas"][0]["total_steps"]
    resumed = train(
        TrainConfig(runtime=RuntimeSettings(out=tmp_path / "b", resume=first.last_checkpoint, workers=0, device="cpu"))
    )
    ended = load_checkpoint(resumed.last_checkpoint)
    # the resumed run measures its own speed and re-fits the rest of the schedule, never below the epoch it is in
    assert ended.epoch >= 2 and ended.global_step == ended.epoch * steps_per_epoch
    with (resumed.run_dir / "metrics.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert float(rows[-1]["lr"]) == pytest.approx(0.05 * 0.01, rel=1e-6)  # the schedule has ended
    assert planned_steps >= 2 * steps_per_epoch
