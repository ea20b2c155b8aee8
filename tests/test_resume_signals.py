"""Interrupted runs lose nothing: real SIGINT and SIGTERM sent to `ssd train` in a subprocess, a SIGKILL during a
checkpoint write, and a loss that turns NaN. A resumed run ends where the uninterrupted one ends."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ssdcli.cli.app import main
from ssdcli.engine.checkpoint import load_checkpoint

RUN = ["--synth-images", "24", "--batch-size", "4", "--epochs", "3", "--device", "cpu", "--eval-every", "1"]
RUN += ["--max-steps-per-epoch", "3", "--no-verify-images"]


#: Loading each sample takes 0.1 s longer in the child (the result is the same): on a fast machine the whole run
#: would otherwise be over before the signal arrives.
SLOW_SAMPLES = (
    "import time\n"
    "import ssdcli.data.dataset as dataset\n"
    "_get = dataset.DetectionDataset.__getitem__\n"
    "def slow_get(self, i):\n"
    "    time.sleep(0.1)\n"
    "    return _get(self, i)\n"
    "dataset.DetectionDataset.__getitem__ = slow_get\n"
)


def _spawn(args: list[str], prelude: str = "") -> subprocess.Popen[str]:
    code = f"import sys\n{prelude}\nfrom ssdcli.cli.app import main\nsys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, "train", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


def _wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"the run ended before {path.name} appeared: {process.communicate()[0]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} did not appear")
        time.sleep(0.02)


def _finish(process: subprocess.Popen[str], timeout: float = 180.0) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def _tensors(state: object, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a nested state (model and optimizer state dicts), by its path."""
    found: dict[str, torch.Tensor] = {}
    if isinstance(state, torch.Tensor):
        found[prefix] = state
    elif isinstance(state, dict):
        for key, value in state.items():
            found.update(_tensors(value, f"{prefix}/{key}"))
    elif isinstance(state, (list, tuple)):
        for key, value in enumerate(state):
            found.update(_tensors(value, f"{prefix}/{key}"))
    return found


def _assert_same_training(got: Path, want: Path) -> None:
    a, b = load_checkpoint(got), load_checkpoint(want)
    assert (a.epoch, a.step_in_epoch, a.global_step) == (b.epoch, b.step_in_epoch, b.global_step)
    for name in ("model_state", "train_state"):
        left, right = _tensors(getattr(a, name)), _tensors(getattr(b, name))
        left = {k: v for k, v in left.items() if "/rng/" not in k}
        right = {k: v for k, v in right.items() if "/rng/" not in k}
        assert left.keys() == right.keys()
        for key in left:
            torch.testing.assert_close(left[key].double(), right[key].double(), atol=1e-6, rtol=0, msg=key)


def _rows(path: Path) -> dict[int, dict[str, str]]:
    return {int(r["epoch"]): {k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(path.open())}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Uninterrupted runs, with 0 and 2 DataLoader workers."""
    runs = {}
    for workers in (0, 2):
        out = tmp_path_factory.mktemp(f"reference{workers}")
        assert main(["train", *RUN, "--workers", str(workers), "--out", str(out)]) == 0
        runs[workers] = out / "1"
    return runs


@pytest.mark.slow
@pytest.mark.parametrize(
    "workers, wait, delay",
    [(0, "run", 1.5), (0, "epoch", 0.05), (2, "epoch", 0.3)],
    ids=["w0-mid-epoch", "w0-after-checkpoint", "w2-next-epoch"],
)
def test_resume_after_sigint_equals_the_uninterrupted_run(
    reference: dict[int, Path], tmp_path: Path, workers: int, wait: str, delay: float
) -> None:
    out = tmp_path / "runs"
    process = _spawn([*RUN, "--workers", str(workers), "--out", str(out)], prelude=SLOW_SAMPLES)
    _wait_for(out / "1" / ("config.json" if wait == "run" else "last.pt"), process)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    code, output = _finish(process)
    if code == 0:
        pytest.skip("the run finished before the signal arrived")  # a very fast machine
    assert code == 130, output
    assert "Traceback" not in output and output.count("resume with") == 1, output
    resumed = tmp_path / "resumed"
    assert main(["train", "--resume", str(out / "1" / "last.pt"), "--workers", str(workers), "--out", str(resumed)]) == 0
    _assert_same_training(resumed / "1" / "last.pt", reference[workers] / "last.pt")
    want, got = _rows(reference[workers] / "metrics.csv"), _rows(resumed / "1" / "metrics.csv")
    assert got and all(got[epoch] == want[epoch] for epoch in got), (got, want)
    best_epoch = load_checkpoint(reference[workers] / "best.pt").epoch
    if (resumed / "1" / "best.pt").exists() and load_checkpoint(resumed / "1" / "best.pt").epoch == best_epoch:
        _assert_same_training(resumed / "1" / "best.pt", reference[workers] / "best.pt")


@pytest.mark.slow
def test_sigterm_saves_progress_and_exits_143(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    process = _spawn([*RUN, "--workers", "0", "--out", str(out)], prelude=SLOW_SAMPLES)
    _wait_for(out / "1" / "config.json", process)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    code, output = _finish(process)
    assert code == 143, output
    lines = [line for line in output.splitlines() if "interrupted (SIGTERM)" in line]
    assert len(lines) == 1 and "ssd train --resume" in lines[0], output
    assert load_checkpoint(out / "1" / "last.pt").global_step >= 0


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_keeps_the_previous_last_pt(tmp_path: Path) -> None:
    """torch.save is slowed down in the child so that the kill lands inside a write of last.pt."""
    out = tmp_path / "runs"
    slow = (
        "import time, torch\n"
        "_save = torch.save\n"
        "def slow_save(obj, f, *a, **k):\n"
        "    _save(obj, f, *a, **k)\n"
        "    time.sleep(1.5)\n"
        "torch.save = slow_save\n"
    )
    process = _spawn([*RUN, "--workers", "0", "--out", str(out)], prelude=slow)
    _wait_for(out / "1" / "last.pt", process)  # the first write is complete
    run = out / "1"
    deadline = time.monotonic() + 120
    while not list(run.glob(".last.pt.*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the next write of last.pt has begun
    process.send_signal(signal.SIGKILL)
    process.communicate()
    checkpoint = load_checkpoint(run / "last.pt")  # loadable: the previous complete file
    assert checkpoint.epoch >= 1
    # A resume from it runs to the end; the stale temporary file is left aside.
    assert main(["train", "--resume", str(run / "last.pt"), "--workers", "0", "--out", str(tmp_path / "resumed")]) == 0


def test_a_nan_loss_stops_at_the_next_check_and_keeps_the_state_checked_before_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssdcli.engine.train.loop as engine

    real = engine.ssd_loss
    calls = {"n": 0}

    def nan_at_third_step(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        loss = real(*args, **kwargs)
        if calls["n"] == 3:
            return type(loss)(*(value * float("nan") for value in loss))
        return loss

    monkeypatch.setattr(engine, "ssd_loss", nan_at_third_step)
    out = tmp_path / "runs"
    assert main(["train", *RUN, "--workers", "0", "--out", str(out)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "non-finite loss at epoch 1 step 3" in errors[0], errors
    # The losses are checked every CHECK_EVERY steps and at the epoch's end (step 3 here): last.pt holds the state
    # of the check before, the epoch's start.
    checkpoint = load_checkpoint(out / "1" / "last.pt")
    assert (checkpoint.epoch, checkpoint.step_in_epoch, checkpoint.global_step) == (0, 0, 0)
    assert all(torch.isfinite(t).all() for t in _tensors(checkpoint.model_state).values())
    assert not (out / "1" / "best.pt").exists()


def test_resume_extends_a_finished_run_or_says_it_is_done(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    args = ["--synth-images", "16", "--batch-size", "4", "--device", "cpu", "--max-steps-per-epoch", "1"]
    assert main(["train", *args, "--epochs", "1", "--workers", "0", "--out", str(out), "--eval-every", "0"]) == 0
    last = out / "1" / "last.pt"
    capsys.readouterr()
    assert main(["train", "--resume", str(last), "--out", str(tmp_path / "again")]) == 0
    assert "nothing to do" in capsys.readouterr().out and not (tmp_path / "again").exists()
    assert main(["train", "--resume", str(last), "--epochs", "2", "--lr", "0.5", "--out", str(tmp_path / "more")]) == 0
    text = capsys.readouterr()
    assert "rebuilt for 2 epochs" in text.out and "ignored: lr" in text.err
    assert load_checkpoint(tmp_path / "more" / "1" / "last.pt").epoch == 2
    # Without validation, best.pt is the last epoch's (one rule, documented).
    best = load_checkpoint(tmp_path / "more" / "1" / "best.pt")
    assert best.epoch == 2
