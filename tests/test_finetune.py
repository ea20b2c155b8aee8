"""`ssd train --weights CHECKPOINT`: fine-tuning a model of ssd train. The architecture, default boxes and input
settings come from the checkpoint; classes are matched by name, the class head's rows of classes in both sets are
kept (in the data's order) and only new classes start afresh."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import model_checkpoint
from ssdcli.cli.app import main
from ssdcli.config import ModelSettings
from ssdcli.engine.checkpoint import load_checkpoint, save_checkpoint
from ssdcli.engine.train.finetune import class_rows, start_from_detector
from ssdcli.errors import UsageError
from ssdcli.models.build import build_model
from ssdcli.models.heads import SSDHead
from ssdcli.models.spec import default_config

THEIRS = ("background", "a", "b", "c")
OURS = ("background", "a", "c", "new")  # a kept, c moved from 3 to 2, b dropped, new starts afresh


def _class_rows_of(weight: torch.Tensor, boxes: int, classes: int) -> torch.Tensor:
    """[k * C, ...] -> [k, C, ...]: channel a * C + j is class j of box a."""
    return weight.reshape(boxes, classes, *weight.shape[1:])


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    torch.manual_seed(1)
    model = build_model(default_config("ssd_tiny", num_classes=len(THEIRS)))
    return save_checkpoint(model_checkpoint(model, THEIRS), tmp_path / "best.pt")


def test_the_rows_of_classes_in_both_sets_are_kept_in_the_new_order(trained: Path) -> None:
    before = load_checkpoint(trained)
    torch.manual_seed(2)
    model, line = start_from_detector(ModelSettings(weights=str(trained)), OURS)
    assert model.config.num_classes == 4 and model.config.layout == before.spec.config.layout
    assert "1 kept (a), 1 re-ordered (c), 1 re-initialised (new)" in line and "the weights have 3" in line
    state = model.state_dict()
    for level, boxes in enumerate(before.spec.config.layout.boxes_per_cell):
        for part in ("weight", "bias"):
            old = _class_rows_of(before.model_state[f"head.conf.{level}.{part}"], boxes, len(THEIRS))
            new = _class_rows_of(state[f"head.conf.{level}.{part}"], boxes, len(OURS))
            assert torch.equal(new[:, 0], old[:, 0]) and torch.equal(new[:, 1], old[:, 1])
            assert torch.equal(new[:, 2], old[:, 3])
            if part == "weight":  # a fresh draw (biases start at zero)
                assert not any(torch.equal(new[:, 3], old[:, j]) for j in range(len(THEIRS)))
    kept = [name for name in before.model_state if not name.startswith("head.conf.")]
    assert kept and all(torch.equal(state[name], before.model_state[name]) for name in kept)


def test_separable_heads_keep_their_rows_and_depthwise_part() -> None:
    torch.manual_seed(0)
    head = SSDHead((8, 16), (2, 3), num_classes=4, separable=True)
    old = {name: value.clone() for name, value in head.state_dict().items()}
    head.keep_class_rows(class_rows(THEIRS, OURS))
    state = head.state_dict()
    for level, boxes in enumerate((2, 3)):
        assert torch.equal(state[f"conf.{level}.0.0.weight"], old[f"conf.{level}.0.0.weight"])
        new = _class_rows_of(state[f"conf.{level}.1.weight"], boxes, 4)
        before = _class_rows_of(old[f"conf.{level}.1.weight"], boxes, 4)
        assert torch.equal(new[:, 2], before[:, 3]) and torch.equal(new[:, 1], before[:, 1])
    assert torch.equal(state["loc.1.1.weight"], old["loc.1.1.weight"])


def test_class_rows_match_by_name() -> None:
    assert class_rows(THEIRS, OURS) == [0, 1, 3, None]
    assert class_rows(("__background__", "person", "car"), ("background", "car")) == [0, 2]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(arch="ssd300_vgg16"), "arch ssd300_vgg16: the weights best.pt are for ssd_tiny"),
        (dict(anchors=Path("layout.json")), "the detector's default boxes come with its weights"),
        (dict(img_size=300), "img_size 300: ssd_tiny from weights takes 160 px inputs"),
    ],
)
def test_what_cannot_work_is_refused(trained: Path, settings: dict, message: str) -> None:
    with pytest.raises(UsageError) as raised:
        start_from_detector(ModelSettings(weights=str(trained), **settings), OURS)
    assert message in str(raised.value)


@pytest.mark.slow
def test_fine_tuning_a_run_of_ssd_train_starts_a_fresh_schedule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quick = ["--batch-size", "4", "--synth-images", "16", "--workers", "0", "--device", "cpu", "--eval-every", "0"]
    assert main(["train", *quick, "--epochs", "2", "--max-steps-per-epoch", "2", "--out", str(tmp_path / "a")]) == 0
    first = tmp_path / "a" / "1"
    capsys.readouterr()
    args = ["--weights", str(first / "best.pt"), "--data", str(first / "data"), "--classes", "triangle,square,circle"]
    assert main(["train", *quick, *args, "--epochs", "1", "--max-steps-per-epoch", "1", "--out", str(tmp_path / "b")]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "1 kept (square), 2 re-ordered (triangle, circle), 0 re-initialised" in printed
    tuned = load_checkpoint(tmp_path / "b" / "1" / "last.pt")
    assert (tuned.epoch, tuned.global_step) == (1, 1)  # a new run, not a continued one
    assert tuned.spec.class_names == ("background", "triangle", "square", "circle")
    assert tuned.train_state is not None and tuned.train_state["ema"]["updates"] == 1
