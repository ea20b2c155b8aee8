"""The training plan: everything a run will use, settled from the checked inputs before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssdcli.cli.app import main
from ssdcli.config import DataSettings, ModelSettings, OptimSettings, RuntimeSettings, TrainConfig
from ssdcli.data.dataset import open_index
from ssdcli.data.synth import write_synth
from ssdcli.engine.events import Event, Message
from ssdcli.engine.train.budget import DEFAULT_BUDGET_S
from ssdcli.engine.train.plan import plan_training

CPU = torch.device("cpu")


def _messages(events: list[Event]) -> list[str]:
    return [event.text for event in events if isinstance(event, Message)]


def test_the_plan_settles_data_classes_layout_and_length_and_writes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "voc"
    write_synth(data, format="voc", images=16, seed=0, image_size=96)
    out = tmp_path / "runs"
    config = TrainConfig(
        data=DataSettings(data=data),
        model=ModelSettings(arch="ssd_tiny", anchors=Path("auto"), freeze="1"),
        optim=OptimSettings(batch_size=2),
        runtime=RuntimeSettings(out=out, device="cpu", workers=0, threads=1),
    )
    events: list[Event] = []
    plan = plan_training(config, CPU, 1, events.append)
    assert plan is not None and plan.checkpoint is None
    assert not out.exists() and not (data / "data").exists()
    assert plan.config.optim.time_budget == DEFAULT_BUDGET_S and plan.length_line.startswith("training for about")
    assert plan.config.data.data == data  # as given: the run folder's config.json holds it resolved
    assert plan.train_data is not None and plan.class_names == open_index(data, "train").class_names
    assert plan.layout is not None and plan.model.config.layout == plan.layout
    assert plan.model.config.num_classes == len(plan.class_names) and len(plan.frozen) == 1
    assert len(plan.notes) == 1 and plan.notes[0].startswith("anchors fitted to the")
    assert not _messages(events)  # the notes are said once the run has started


@pytest.mark.slow
def test_a_resumed_plan_takes_the_runs_settings_and_model_and_knows_when_nothing_is_left(tmp_path: Path) -> None:
    first = tmp_path / "first"
    args = ["--synth-images", "16", "--batch-size", "4", "--device", "cpu", "--workers", "0", "--eval-every", "0"]
    args += ["--epochs", "1", "--max-steps-per-epoch", "1", "--lr", "0.02"]
    assert main(["train", *args, "--out", str(first)]) == 0
    last = first / "1" / "last.pt"
    again = tmp_path / "again"
    given = TrainConfig(optim=OptimSettings(lr=0.5), runtime=RuntimeSettings(out=again, resume=last, device="cpu"))

    events: list[Event] = []
    assert plan_training(given.updated(epochs=1), CPU, 1, events.append) is None
    assert any("nothing to do" in text for text in _messages(events))

    events.clear()
    plan = plan_training(given.updated(epochs=2), CPU, 1, events.append)
    assert plan is not None and plan.checkpoint is not None and plan.checkpoint.epoch == 1
    assert (plan.config.optim.lr, plan.config.optim.epochs, plan.config.runtime.out) == (0.02, 2, again)
    assert plan.model.config == plan.checkpoint.spec.config and plan.class_names == plan.checkpoint.spec.class_names
    assert plan.train_data is not None and plan.config.data.data == (first / "1" / "data").resolve()  # its own data
    assert _messages(events) == [
        "resuming keeps the run's own settings; ignored: lr",
        "the schedule is rebuilt for 2 epochs (the run had 1)",
    ]
    assert not again.exists()
