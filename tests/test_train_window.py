"""The window of step losses the training loop reads every CHECK_EVERY steps."""

from __future__ import annotations

import time
from itertools import islice
from pathlib import Path

import pytest
import torch

from host_syncs import HostSyncs
from ssdcli.config import TrainConfig
from ssdcli.engine.checkpoint import load_checkpoint
from ssdcli.engine.events import StepDone, ignore_events
from ssdcli.engine.train.checkpoints import CheckpointPolicy
from ssdcli.engine.train.distributed import DistContext
from ssdcli.engine.train.loop import Progress, train_one_epoch
from ssdcli.engine.train.run import build_run
from ssdcli.engine.train.window import CHECK_EVERY, LossWindow, first_non_finite
from ssdcli.errors import TrainingDiverged


def test_the_window_reads_its_steps_at_once_in_order() -> None:
    window = LossWindow(torch.device("cpu"), size=3)
    with HostSyncs() as syncs:
        for step in range(3):
            window.add(torch.tensor(1.5 + step), torch.tensor(0.25 * step))
    assert syncs.total == 0 and window.full and len(window) == 3
    with HostSyncs() as syncs:
        rows = window.take()
    assert syncs.names == {"tolist": 1}
    assert rows == [(1.5, 0.0), (2.5, 0.25), (3.5, 0.5)] and len(window) == 0 and not window.full


def test_first_non_finite_names_the_first_bad_step() -> None:
    assert first_non_finite([(1.0, 2.0), (3.0, 4.0)]) is None
    assert first_non_finite([(1.0, 2.0), (float("nan"), 1.0), (float("inf"), 1.0)]) == 1
    assert first_non_finite([(1.0, float("-inf"))]) == 0


def test_a_window_of_no_steps_is_refused() -> None:
    with pytest.raises(ValueError, match="size"):
        LossWindow(torch.device("cpu"), size=0)


@pytest.mark.slow
def test_a_nan_mid_window_stops_at_the_check_with_the_state_checked_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssdcli.engine.train.loop as engine

    config = TrainConfig().updated(out=tmp_path, epochs=1, batch_size=2, synth_images=40, workers=0, device="cpu")
    run = build_run(config.updated(arch="ssd_tiny", eval_every=0, threads=1), torch.device("cpu"), DistContext(),
                    ignore_events, time.perf_counter())  # fmt: skip
    assert run is not None and run.steps_per_epoch > CHECK_EVERY + 3
    real, calls = engine.ssd_loss, {"n": 0}

    def nan_at_step_12(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return type(loss)(*(value * float("nan") for value in loss)) if calls["n"] == CHECK_EVERY + 2 else loss

    monkeypatch.setattr(engine, "ssd_loss", nan_at_step_12)
    steps: list[int] = []
    with pytest.raises(TrainingDiverged, match=f"step {CHECK_EVERY + 2} .*epoch 1 step {CHECK_EVERY}\\)"):
        train_one_epoch(run, islice(run.loader, run.steps_per_epoch), Progress(0), CheckpointPolicy(run, ignore_events),
                        lambda: False, lambda e: steps.append(e.step) if isinstance(e, StepDone) else None)  # fmt: skip
    assert steps[-1] == run.steps_per_epoch - 1  # the check of the epoch's last step raised, before its report
    saved = load_checkpoint(run.run_dir / "last.pt")
    assert (saved.step_in_epoch, saved.global_step) == (CHECK_EVERY, CHECK_EVERY)
    assert all(torch.isfinite(t).all() for t in saved.model_state.values() if t.is_floating_point())
