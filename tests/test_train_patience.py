"""`--patience N`: a run stops after N validations in a row without a better validation mAP@0.5, says so, and a
resumed run continues the count."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

import ssdcli.engine.train.loop as loop
from ssdcli.cli.app import main
from ssdcli.config import TrainConfig
from ssdcli.engine.checkpoint import load_checkpoint
from ssdcli.engine.events import Event, Message
from ssdcli.engine.train.budget import Patience

QUICK = dict(batch_size=4, synth_images=16, workers=0, device="cpu", max_steps_per_epoch=1, verify_images=False)


def _scores(monkeypatch: pytest.MonkeyPatch, scores: list[float]) -> None:
    """Validation reports ``scores`` as its mAP@0.5 (every class with enough objects: the figure best.pt is chosen
    by is the same), one per validation, in order."""
    left: Iterator[float] = iter(scores)

    def validate(run: object, row: dict[str, float], pictures: object, emit: object) -> None:
        score = next(left)
        row.update(map50=score, coco_ap=0.0, select_map50=score)

    monkeypatch.setattr(loop, "validate", validate)


def _messages(events: list[Event]) -> list[str]:
    return [event.text for event in events if isinstance(event, Message)]


def test_the_count_resets_on_a_better_map_and_ends_at_the_limit() -> None:
    patience = Patience(2)
    for improved, exhausted in ((False, False), (True, False), (False, False), (False, True)):
        patience.record(improved)
        assert patience.exhausted is exhausted
    assert not Patience(None, stale=99).exhausted


@pytest.mark.slow
def test_patience_stops_at_the_nth_validation_without_a_better_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # epoch 3 is worse than 0.3 and epoch 4 only equal: the second validation in a row without a better mAP
    _scores(monkeypatch, [0.1, 0.3, 0.2, 0.3, 0.9, 0.9])
    events: list[Event] = []
    config = TrainConfig().updated(out=tmp_path, epochs=6, patience=2, **QUICK)
    result = loop.train(config, events.append)
    assert result.stopped_early and [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert [row["epoch"] for row in csv.DictReader((tmp_path / "1" / "metrics.csv").open())] == ["1", "2", "3", "4"]
    assert load_checkpoint(tmp_path / "1" / "best.pt").epoch == 2
    assert any(text.startswith("stopped early after epoch 4 (`patience` 2)") for text in _messages(events))


@pytest.mark.slow
def test_without_patience_the_run_ends_with_its_epochs_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scores(monkeypatch, [0.3, 0.1, 0.1])
    events: list[Event] = []
    result = loop.train(TrainConfig().updated(out=tmp_path, epochs=3, **QUICK), events.append)
    assert not result.stopped_early and len(result.history) == 3
    assert "the run ended after its 3 epochs (`epochs`)" in _messages(events)


@pytest.mark.slow
def test_a_resumed_run_continues_the_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _scores(monkeypatch, [0.3, 0.1, 0.1, 0.2, 0.2, 0.2])
    first = loop.train(TrainConfig().updated(out=tmp_path / "a", epochs=3, patience=3, **QUICK))
    assert not first.stopped_early and first.last_checkpoint is not None
    assert load_checkpoint(first.last_checkpoint).train_state["stale_validations"] == 2
    resume = TrainConfig().updated(out=tmp_path / "b", resume=first.last_checkpoint, epochs=6, workers=0, device="cpu")
    again = loop.train(resume)
    assert again.stopped_early and [row["epoch"] for row in again.history] == [4]


def test_patience_without_validation_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    assert main(["train", "--patience", "3", "--eval-every", "0", "--out", str(out), "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip() == "error: --patience counts validations, and --eval-every 0 turns them off"
    assert main(["train", "--patience", "0", "--out", str(out)]) == 2
    assert "--patience: expected at least 1" in capsys.readouterr().err
    assert not out.exists()
