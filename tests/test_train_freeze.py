"""`--freeze backbone` / `--freeze N`: frozen backbone stages get no gradient and no weight decay, their BatchNorm
statistics stay fixed, the run's config records it and a resumed run keeps it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ssdcli.cli.app import main
from ssdcli.config import TrainConfig
from ssdcli.data.synth import SYNTH_CLASSES
from ssdcli.engine.checkpoint import load_checkpoint
from ssdcli.engine.train.freeze import backbone_stages, freeze, keep_frozen
from ssdcli.engine.train.loop import train
from ssdcli.engine.train.schedule import build_optimizer
from ssdcli.errors import UsageError
from ssdcli.models.backbones import MobileNetV3Backbone, VGG16Backbone
from ssdcli.models.build import build_model
from ssdcli.models.spec import default_config

QUICK = dict(batch_size=4, synth_images=16, workers=0, device="cpu", max_steps_per_epoch=2, eval_every=0)


def _tiny(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(default_config("ssd_tiny256", num_classes=1 + len(SYNTH_CLASSES)))


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def test_frozen_stages_do_not_change_in_training_steps_with_weight_decay() -> None:
    model = _tiny()
    frozen = freeze(model, "2")
    stages = backbone_stages(model)
    before = [_state(stage) for stage in stages]
    optimizer = build_optimizer(model, "sgd", lr=0.1, momentum=0.9, weight_decay=0.1)
    model.train()
    keep_frozen(frozen)
    for _ in range(2):
        conf, loc = model(torch.randn(2, 3, 256, 256))
        optimizer.zero_grad()
        (conf.square().mean() + loc.square().mean()).backward()
        optimizer.step()
    for stage, saved in zip(stages[:2], before[:2]):  # weights and BatchNorm running statistics
        assert all(torch.equal(stage.state_dict()[name], value) for name, value in saved.items())
        assert all(parameter.grad is None for parameter in stage.parameters())
    assert not torch.equal(stages[2].state_dict()["0.weight"], before[2]["0.weight"])
    assert not torch.equal(stages[2].state_dict()["1.running_mean"], before[2]["1.running_mean"])
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not trained & {id(p) for stage in frozen for p in stage.parameters()}


def test_backbone_freezes_every_stage_and_a_count_the_first_ones() -> None:
    model = _tiny()
    assert len(freeze(model, "backbone")) == 5
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    with pytest.raises(UsageError, match="^freeze 6: the backbone has 5 stages$"):
        freeze(_tiny(), "6")
    with pytest.raises(UsageError, match="^freeze: expected 'backbone' or a number"):
        TrainConfig().updated(freeze="0")


@pytest.mark.parametrize("backbone", [VGG16Backbone, MobileNetV3Backbone])
def test_the_imagenet_trunks_split_into_five_stages_that_cover_them(backbone: type) -> None:
    built = backbone()
    stages = built.freezable_stages()
    assert len(stages) == 5
    covered = [id(p) for stage in stages for p in stage.parameters()]
    assert sorted(covered) == sorted(id(p) for p in built.trunk.parameters())


@pytest.mark.slow
def test_a_frozen_run_keeps_its_stages_and_a_resume_keeps_freezing(tmp_path: Path) -> None:
    config = TrainConfig().updated(out=tmp_path / "a", epochs=1, freeze="2", **QUICK)
    first = train(config)
    assert json.loads((tmp_path / "a" / "1" / "config.json").read_text())["model"]["freeze"] == "2"
    initial = _tiny(config.runtime.seed)
    stages = backbone_stages(initial)

    def unchanged(path: Path, count: int) -> list[bool]:
        trained = load_checkpoint(path).train_state["model"]  # the trained weights (not their average)
        return [
            all(torch.equal(trained[f"backbone.stages.{index}.{name}"], value) for name, value in _state(stage).items())
            for index, stage in enumerate(stages[:count])
        ]

    assert unchanged(first.last_checkpoint, 3) == [True, True, False]
    again = train(TrainConfig().updated(out=tmp_path / "b", resume=first.last_checkpoint, epochs=2, workers=0))
    assert unchanged(again.last_checkpoint, 3) == [True, True, False]


def test_the_flag_is_checked_before_anything_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    assert main(["train", "--freeze", "top", "--out", str(out)]) == 2
    assert "error: --freeze: expected 'backbone' or a number of backbone stages" in capsys.readouterr().err
    assert main(["train", "--freeze", "9", "--out", str(out), "--device", "cpu", "--synth-images", "16"]) == 2
    assert capsys.readouterr().err.strip() == "error: --freeze 9: the backbone has 5 stages"
    assert not out.exists()
