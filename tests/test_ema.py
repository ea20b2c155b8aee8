"""The weight average of ssdcli.engine.train.ema against the formula, computed here by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ssdcli.engine.train.ema import ModelEMA, ema_decay


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def test_decay_ramps_towards_its_limit() -> None:
    assert ema_decay(1, 0.9, 10.0) == pytest.approx(0.9 * (1 - math.exp(-0.1)))
    assert ema_decay(10, 0.9, 10.0) == pytest.approx(0.9 * 0.6321205588)
    assert ema_decay(10_000, 0.9, 10.0) == pytest.approx(0.9)


def test_parameters_follow_the_formula_and_buffers_are_copied() -> None:
    model = _tiny()
    ema = ModelEMA(model, decay=0.5, tau=2.0)
    expected = model[0].weight.detach().clone()  # the average starts as the model
    for update in (1, 2, 3):
        with torch.no_grad():
            model[0].weight.add_(float(update))  # the "optimizer step"
        model.train()(torch.randn(4, 3))  # moves BatchNorm's running statistics
        ema.update(model)
        d = 0.5 * (1 - math.exp(-update / 2.0))
        expected = d * expected + (1 - d) * model[0].weight.detach()
    torch.testing.assert_close(ema.module[0].weight, expected)
    assert not torch.equal(ema.module[0].weight, model[0].weight)
    torch.testing.assert_close(ema.module[1].running_mean, model[1].running_mean)
    assert int(ema.module[1].num_batches_tracked) == 3
    assert ema.updates == 3


def test_average_is_frozen_and_independent_of_the_model() -> None:
    model = _tiny()
    ema = ModelEMA(model)
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert not ema.module.training
    with torch.no_grad():
        model[0].bias.fill_(7.0)
    assert not torch.equal(ema.module[0].bias, model[0].bias)


def test_state_round_trip_continues_the_count() -> None:
    model = _tiny()
    ema = ModelEMA(model, decay=0.9, tau=5.0)
    for _ in range(4):
        with torch.no_grad():
            model[0].weight.mul_(1.1)
        ema.update(model)
    restored = ModelEMA(_tiny(), decay=0.1, tau=1.0)
    restored.load_state_dict(ema.state_dict())
    assert (restored.updates, restored.decay, restored.tau) == (4, 0.9, 5.0)
    ema.update(model)
    restored.update(model)
    torch.testing.assert_close(restored.module[0].weight, ema.module[0].weight)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="decay"):
        ModelEMA(_tiny(), decay=1.0)
    with pytest.raises(ValueError, match="tau"):
        ModelEMA(_tiny(), tau=0.0)
