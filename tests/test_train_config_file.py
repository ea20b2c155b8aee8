"""`ssd train --config`: a new run with the settings of an earlier one (its config.json or a checkpoint), options
given beside it over the file's values, `--print-config` to see them; bad files are one line naming the entry."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ssdcli.cli.app import main
from ssdcli.config import DataSettings, ModelSettings, OptimSettings, RuntimeSettings, TrainConfig
from ssdcli.engine.checkpoint import load_checkpoint, save_checkpoint
from ssdcli.engine.train.config_file import read_train_config

#: An earlier run's settings; its data folder does not exist (printing the settings reads no data).
EARLIER = TrainConfig(
    data=DataSettings(data=Path("nowhere/bccd"), classes=("cell", "platelet")),
    model=ModelSettings(arch="ssd_tiny"),
    optim=OptimSettings(epochs=7, batch_size=8, optimizer="adamw", lr=0.002, weight_decay=0.01, ema=False),
    runtime=RuntimeSettings(workers=0, device="cpu", seed=7, out=Path("runs/x"), resume=Path("runs/x/1/last.pt")),
)


def _printed(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[TrainConfig, str]:
    capsys.readouterr()
    assert main(["train", *args, "--print-config"]) == 0
    captured = capsys.readouterr()
    return TrainConfig.from_dict(json.loads(captured.out), strict=True), captured.err


def test_a_config_file_gives_every_setting_and_options_override_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(EARLIER.to_dict()))
    same, note = _printed(["--config", str(saved)], capsys)
    assert same == dataclasses.replace(EARLIER, runtime=dataclasses.replace(EARLIER.runtime, resume=None))
    assert "overridden" not in note
    # --batch-size 32 is the option's default: given, it still wins over the file's 8; --time replaces the epochs
    changed, note = _printed(["--config", str(saved), "--lr", "0.01", "--batch-size", "32", "--time", "2m"], capsys)
    expected = TrainConfig(
        data=EARLIER.data,
        model=EARLIER.model,
        optim=dataclasses.replace(EARLIER.optim, lr=0.01, batch_size=32, epochs=None, time_budget=120.0),
        runtime=dataclasses.replace(EARLIER.runtime, resume=None),
    )
    assert changed == expected
    assert "overridden: --lr, --batch-size, --time" in note


def test_the_config_of_a_checkpoint_is_read_the_same_way(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    held = load_checkpoint(checkpoint)
    trained = save_checkpoint(dataclasses.replace(held, train_state={"config": EARLIER.to_dict()}), tmp_path / "best.pt")
    assert read_train_config(trained) == EARLIER
    printed, _ = _printed(["--config", str(trained), "--seed", "3"], capsys)
    assert printed.runtime.seed == 3 and printed.optim == EARLIER.optim and printed.runtime.resume is None
    assert main(["train", "--config", str(checkpoint), "--print-config"]) == 2  # exported: no training settings
    assert capsys.readouterr().err.strip() == (
        f"error: {checkpoint}: holds no training settings (was it exported for inference?)"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda saved: saved["optim"].update(mosaic=True), "'optim.mosaic' is not a setting of a training run"),
        (lambda saved: saved.update(extras={}), "'extras' is not a part of a training config"),
        (lambda saved: saved["optim"].update(lr="fast"), "'lr': expected a number (or null), got 'fast'"),
        (lambda saved: saved["optim"].update(ema="yes"), "'ema': expected true or false, got 'yes'"),
        (lambda saved: saved["optim"].update(epochs=2.5), "'epochs': expected a whole number (or null), got 2.5"),
        (lambda saved: saved["optim"].update(lr=-1), "'lr': expected a positive learning rate, got -1"),
        (lambda saved: saved["data"].update(classes="cell"), "'classes': expected a list of strings (or null)"),
    ],
)
def test_a_bad_entry_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change, message: str
) -> None:
    saved = EARLIER.to_dict()
    change(saved)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved))
    out = tmp_path / "runs"
    assert main(["train", "--config", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}: {message}") and "\n" not in err
    assert not out.exists()


@pytest.mark.slow
def test_a_run_started_from_config_json_has_the_original_settings(tmp_path: Path) -> None:
    args = ["--synth-images", "16", "--batch-size", "4", "--device", "cpu", "--max-steps-per-epoch", "1"]
    first = tmp_path / "first"
    assert main(["train", *args, "--epochs", "1", "--workers", "0", "--out", str(first), "--eval-every", "0"]) == 0
    original = json.loads((first / "1" / "config.json").read_text())
    again = tmp_path / "again"
    assert main(["train", "--config", str(first / "1" / "config.json"), "--out", str(again), "--seed", "5"]) == 0
    reproduced = json.loads((again / "1" / "config.json").read_text())
    original["runtime"].update(out=str(again), seed=5)
    assert reproduced == original
