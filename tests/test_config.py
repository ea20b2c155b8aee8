"""TrainConfig: its five parts check their own values, and saved configs are read back in the nested form that runs
write now and in the flat form of older runs' config.json and checkpoints."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from ssdcli.cli.app import main
from ssdcli.cli.render import as_flags
from ssdcli.config import (
    TRAIN_PARTS,
    AugmentSettings,
    DataSettings,
    ModelSettings,
    OptimSettings,
    RuntimeSettings,
    TrainConfig,
)
from ssdcli.engine.checkpoint import load_checkpoint, save_checkpoint
from ssdcli.errors import UsageError

#: What an older version's ``TrainConfig.to_dict()`` wrote: every field at the top level, paths as strings.
FLAT = {
    "data": "data/bccd",
    "data_format": "auto",
    "train_split": None,
    "val_split": "test",
    "val_data": None,
    "classes": ("cell", "platelet"),
    "arch": "ssd_tiny",
    "anchors": None,
    "backbone_weights": None,
    "weights": None,
    "img_size": None,
    "freeze": None,
    "auto_recipe": True,
    "epochs": 3,
    "time_budget": None,
    "patience": None,
    "batch_size": 8,
    "optimizer": "adamw",
    "lr": 0.002,
    "momentum": 0.9,
    "weight_decay": 0.0005,
    "warmup_steps": 100,
    "zoom_out": 1.5,
    "iou_crop": False,
    "ema": False,
    "ema_decay": 0.995,
    "ema_tau": 100.0,
    "workers": 0,
    "threads": None,
    "device": "cpu",
    "amp": False,
    "seed": 7,
    "eval_every": 1,
    "out": "runs/x",
    "resume": None,
    "synth_images": 400,
    "max_steps_per_epoch": 2,
    "verify_images": True,
    "strict": True,
    "tensorboard": False,
    "mlflow": None,
}

#: The same settings in the nested form.
NESTED = TrainConfig(
    data=DataSettings(data=Path("data/bccd"), val_split="test", classes=("cell", "platelet"), strict=True),
    model=ModelSettings(arch="ssd_tiny"),
    optim=OptimSettings(epochs=3, batch_size=8, optimizer="adamw", lr=0.002, ema=False),
    augment=AugmentSettings(zoom_out=1.5, iou_crop=False),
    runtime=RuntimeSettings(workers=0, device="cpu", seed=7, out=Path("runs/x"), max_steps_per_epoch=2),
)


def test_the_flat_form_of_older_runs_is_read() -> None:
    assert TrainConfig.from_dict(FLAT) == NESTED
    assert TrainConfig.from_dict(json.loads(json.dumps(FLAT))) == NESTED  # config.json: classes as a list


def test_settings_that_no_longer_exist_are_ignored_and_missing_ones_take_their_defaults() -> None:
    assert TrainConfig.from_dict({**FLAT, "mosaic": True}) == NESTED
    assert TrainConfig.from_dict({"data": "data/bccd", "train_split": "train"}) == TrainConfig(
        DataSettings(data=Path("data/bccd"), train_split="train")
    )
    nested = NESTED.to_dict()
    nested["optim"]["lookahead"] = 5
    assert TrainConfig.from_dict(nested) == NESTED


def test_the_nested_form_round_trips() -> None:
    saved = NESTED.to_dict()
    assert list(saved) == list(TRAIN_PARTS)
    assert saved["data"]["data"] == "data/bccd" and saved["optim"]["lr"] == 0.002
    assert TrainConfig.from_dict(saved) == NESTED
    assert TrainConfig.from_dict(json.loads(json.dumps(saved))) == NESTED
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


def test_field_names_are_unique_across_the_parts() -> None:
    names = [f.name for kind in TRAIN_PARTS.values() for f in dataclasses.fields(kind)]
    assert len(names) == len(set(names)) == len(FLAT)


def test_updated_changes_fields_in_their_parts() -> None:
    changed = NESTED.updated(lr=0.01, out=Path("runs/y"))
    assert (changed.optim.lr, changed.runtime.out) == (0.01, Path("runs/y"))
    assert (changed.data, changed.model, changed.augment) == (NESTED.data, NESTED.model, NESTED.augment)
    with pytest.raises(TypeError, match="mosaic"):
        NESTED.updated(mosaic=True)


@pytest.mark.parametrize(
    ("make", "field", "flag"),
    [
        (lambda: DataSettings(data_format="pascal"), "data_format", "--format"),
        (lambda: DataSettings(synth_images=4), "synth_images", "--synth-images"),
        (lambda: ModelSettings(img_size=0), "img_size", "--img-size"),
        (lambda: OptimSettings(lr=-1.0), "lr", "--lr"),
        (lambda: OptimSettings(momentum=1.0), "momentum", "--momentum"),
        (lambda: OptimSettings(epochs=2, time_budget=60.0), "epochs", "--epochs"),
        (lambda: OptimSettings(time_budget=0.0), "time_budget", "--time"),
        (lambda: AugmentSettings(zoom_out=0.5), "zoom_out", "--zoom-out"),
        (lambda: RuntimeSettings(workers=-1), "workers", "--workers"),
        (lambda: RuntimeSettings(max_steps_per_epoch=0), "max_steps_per_epoch", "--max-steps-per-epoch"),
    ],
)
def test_each_part_refuses_a_bad_value_naming_the_field(make: Any, field: str, flag: str) -> None:
    with pytest.raises(UsageError) as raised:
        make()
    assert str(raised.value).split(" ")[0].rstrip(":") == field
    assert as_flags(raised.value.message).startswith(flag)


def test_a_checkpoint_with_a_flat_config_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint of an older version (flat config) resumes as the same checkpoint with a nested config does."""
    out = tmp_path / "runs"
    args = ["--synth-images", "16", "--batch-size", "4", "--device", "cpu", "--max-steps-per-epoch", "1"]
    assert main(["train", *args, "--epochs", "1", "--workers", "0", "--out", str(out), "--eval-every", "0"]) == 0
    last = out / "1" / "last.pt"
    checkpoint = load_checkpoint(last)
    assert checkpoint.train_state is not None and "optim" in checkpoint.train_state["config"]
    flat = {
        "data": str(out.resolve() / "1" / "data"),
        "data_format": "auto",
        "train_split": None,
        "val_split": None,
        "val_data": None,
        "classes": None,
        "arch": "ssd_tiny256",
        "anchors": None,
        "backbone_weights": None,
        "weights": None,
        "img_size": None,
        "epochs": 1,
        "time_budget": None,
        "batch_size": 4,
        "optimizer": "sgd",
        "lr": None,
        "momentum": 0.9,
        "weight_decay": 0.0005,
        "warmup_steps": 100,
        "zoom_out": 2.0,
        "iou_crop": True,
        "ema": True,
        "ema_decay": 0.995,
        "ema_tau": 100.0,
        "workers": 0,
        "threads": None,
        "device": "cpu",
        "amp": False,
        "seed": 0,
        "eval_every": 0,
        "out": str(out),
        "resume": None,
        "synth_images": 16,
        "max_steps_per_epoch": 1,
        "verify_images": True,
        "strict": False,
        "tensorboard": False,
    }
    assert TrainConfig.from_dict(flat) == TrainConfig.from_dict(checkpoint.train_state["config"])
    old = save_checkpoint(
        dataclasses.replace(checkpoint, train_state={**checkpoint.train_state, "config": flat}), tmp_path / "old.pt"
    )
    capsys.readouterr()
    for source, target in ((last, "nested"), (old, "flat")):
        assert main(["train", "--resume", str(source), "--epochs", "2", "--out", str(tmp_path / target)]) == 0
    assert "ignored" not in capsys.readouterr().err
    nested, resumed = (load_checkpoint(tmp_path / name / "1" / "last.pt") for name in ("nested", "flat"))
    assert resumed.epoch == nested.epoch == 2
    assert all(torch.equal(resumed.model_state[k], v) for k, v in nested.model_state.items())
    written = json.loads((tmp_path / "flat" / "1" / "config.json").read_text())
    assert written["optim"]["epochs"] == 2 and written["optim"]["batch_size"] == 4
    assert written["runtime"]["resume"] == str(old) and written["data"]["data"] == flat["data"]


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_zoom_out_nan_is_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--zoom-out", value, "--epochs", "1"]) == 2
    assert capsys.readouterr().err.strip() == f"error: --zoom-out: expected a finite number, at least 1 (1: off), got {value}"
