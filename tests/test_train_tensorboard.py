"""`ssd train --tensorboard`: the event files hold what metrics.csv and the step events hold."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from ssdcli.cli.app import main
from ssdcli.config import TrainConfig
from ssdcli.engine.events import Event, StepDone
from ssdcli.engine.train.loop import train

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

QUICK = dict(batch_size=4, synth_images=16, workers=0, device="cpu", max_steps_per_epoch=2)


def test_tensorboard_scalars_equal_the_metrics(tmp_path: Path) -> None:
    steps: list[StepDone] = []

    def collect(event: Event) -> None:
        if isinstance(event, StepDone):
            steps.append(event)

    result = train(TrainConfig().updated(out=tmp_path, epochs=2, eval_every=1, tensorboard=True, **QUICK), collect)
    log = event_accumulator.EventAccumulator(str(result.run_dir / "tensorboard"))
    log.Reload()
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
    for name in ("loss", "loss_conf", "loss_loc", "lr", "map50", "coco_ap"):
        logged = log.Scalars(f"epoch/{name}")
        assert [s.step for s in logged] == [1, 2]
        assert [s.value for s in logged] == pytest.approx([float(r[name]) for r in rows], rel=1e-6)
    conf = log.Scalars("train/loss_conf")
    assert [s.step for s in conf] == [2, 4]  # the checked steps (each epoch's last here), as global steps
    assert [s.value for s in conf] == pytest.approx([e.loss_conf for e in steps if e.loss_conf is not None], rel=1e-6)
    assert [s.step for s in log.Scalars("train/lr")] == [1, 2, 3, 4]


def test_tensorboard_without_the_package_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    args = ["train", "--out", str(tmp_path), "--epochs", "1", "--synth-images", "16", "--workers", "0"]
    code = main(args + ["--device", "cpu", "--tensorboard"])
    err = capsys.readouterr().err
    assert code == 2
    assert "ssdcli[tensorboard]" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # failed before any run folder was made
