"""TrainConfig: its five parts check their own values, and saved configs are read back in the nested form that runs
write."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

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
from ssdcli.errors import UsageError

#: Settings that differ from the defaults in every part.
NESTED = TrainConfig(
    data=DataSettings(data=Path("data/bccd"), val_split="test", classes=("cell", "platelet"), strict=True),
    model=ModelSettings(arch="ssd_tiny"),
    optim=OptimSettings(epochs=3, batch_size=8, optimizer="adamw", lr=0.002, ema=False),
    augment=AugmentSettings(zoom_out=1.5, iou_crop=False),
    runtime=RuntimeSettings(workers=0, device="cpu", seed=7, out=Path("runs/x"), max_steps_per_epoch=2),
)


def test_a_part_that_is_no_object_of_settings_is_refused() -> None:
    """Every field at the top level (no part holding it) is no saved form of a config."""
    with pytest.raises(UsageError, match="'data': expected an object of settings, got 'data/bccd'"):
        TrainConfig.from_dict({"data": "data/bccd", "epochs": 3})
    with pytest.raises(UsageError, match="'epochs' is not a part of a training config"):
        TrainConfig.from_dict({"epochs": 3}, strict=True)


def test_unknown_settings_are_ignored_and_missing_ones_take_their_defaults() -> None:
    assert TrainConfig.from_dict({"data": {"data": "data/bccd", "train_split": "train"}}) == TrainConfig(
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
    assert len(names) == len(set(names))


def test_updated_changes_fields_in_their_parts() -> None:
    changed = NESTED.updated(lr=0.01, out=Path("runs/y"))
    assert (changed.optim.lr, changed.runtime.out) == (0.01, Path("runs/y"))
    assert (changed.data, changed.model, changed.augment) == (NESTED.data, NESTED.model, NESTED.augment)
    with pytest.raises(TypeError, match="cutmix"):
        NESTED.updated(cutmix=True)


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
        (lambda: AugmentSettings(mosaic=2.0), "mosaic", "--mosaic"),
        (lambda: RuntimeSettings(workers=-1), "workers", "--workers"),
        (lambda: RuntimeSettings(max_steps_per_epoch=0), "max_steps_per_epoch", "--max-steps-per-epoch"),
    ],
)
def test_each_part_refuses_a_bad_value_naming_the_field(make: Any, field: str, flag: str) -> None:
    with pytest.raises(UsageError) as raised:
        make()
    assert str(raised.value).split(" ")[0].rstrip(":") == field
    assert as_flags(raised.value.message).startswith(flag)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_zoom_out_nan_is_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--zoom-out", value, "--epochs", "1"]) == 2
    assert capsys.readouterr().err.strip() == f"error: --zoom-out: expected a finite number, at least 1 (1: off), got {value}"
