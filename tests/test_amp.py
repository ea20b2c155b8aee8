"""`ssd train --amp`: mixed precision on CUDA; anywhere else one warning line and float32 training."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ssdcli.cli.app import main
from ssdcli.config import DataSettings, OptimSettings, RuntimeSettings, TrainConfig
from ssdcli.engine.device import mixed_precision, mixed_precision_note
from ssdcli.engine.events import Event, StepDone
from ssdcli.engine.train.loop import train

QUICK = ["--synth-images", "16", "--batch-size", "4", "--epochs", "1", "--max-steps-per-epoch", "1", "--workers", "0"]


def test_the_note_names_no_command_line_option() -> None:
    assert mixed_precision_note(True, torch.device("cpu")) == "mixed precision is for CUDA devices; training in float32 on cpu"
    assert mixed_precision_note(False, torch.device("cpu")) is None
    assert mixed_precision_note(True, torch.device("cuda")) is None


@pytest.mark.slow
def test_amp_on_cpu_is_one_warning_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--amp", "--device", "cpu", "--out", str(tmp_path), *QUICK]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "mixed precision" in line]
    assert lines == ["warning: mixed precision is for CUDA devices; training in float32 on cpu"], err
    assert (tmp_path / "1" / "last.pt").is_file()


@pytest.mark.slow
def test_no_warning_without_amp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--device", "cpu", "--out", str(tmp_path), *QUICK]) == 0
    assert "mixed precision" not in capsys.readouterr().err


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, torch.float16)])
def test_amp_autocasts_to_bf16_where_the_gpu_has_it_else_fp16(
    monkeypatch: pytest.MonkeyPatch, bf16: bool, expected: torch.dtype
) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_, **__: bf16)
    assert mixed_precision(True, torch.device("cuda", 0)) == expected
    assert mixed_precision(False, torch.device("cuda", 0)) is None
    assert mixed_precision(True, torch.device("cpu")) is None


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision needs a CUDA device")
def test_amp_trains_two_steps_on_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[StepDone] = []
    autocast_enabled: list[bool] = []
    original_autocast = torch.autocast

    def recording_autocast(device_type: str, *args: object, **kwargs: object) -> torch.autocast:
        autocast_enabled.append(bool(kwargs.get("enabled", True)))
        return original_autocast(device_type, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "autocast", recording_autocast)
    scalers: list[torch.amp.GradScaler] = []
    original_scaler = torch.amp.GradScaler

    def recording_scaler(*args: object, **kwargs: object) -> torch.amp.GradScaler:
        scalers.append(original_scaler(*args, **kwargs))  # type: ignore[arg-type]
        return scalers[-1]

    monkeypatch.setattr(torch.amp, "GradScaler", recording_scaler)
    convolutions: list[torch.Tensor] = []
    original_conv = torch.nn.Conv2d.forward

    def recording_conv(self: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            convolutions.append(x)
        return original_conv(self, x)

    monkeypatch.setattr(torch.nn.Conv2d, "forward", recording_conv)

    def record(event: Event) -> None:
        if isinstance(event, StepDone):
            steps.append(event)

    config = TrainConfig(
        data=DataSettings(synth_images=16),
        optim=OptimSettings(epochs=1, batch_size=4),
        runtime=RuntimeSettings(out=tmp_path, device="cuda", amp=True, max_steps_per_epoch=2, workers=0),
    )
    result = train(config, record)
    assert len(steps) == 2
    assert steps[-1].loss_conf is not None and steps[-1].loss_loc is not None  # the epoch's last step is checked
    assert math.isfinite(steps[-1].loss_conf) and math.isfinite(steps[-1].loss_loc)
    assert result.last_checkpoint is not None and result.last_checkpoint.is_file()
    assert autocast_enabled and all(autocast_enabled[:2])  # the training steps ran under autocast
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert any(x.dtype == expected for x in convolutions)  # convolutions after the first run in the autocast dtype
    assert convolutions[0].is_contiguous(memory_format=torch.channels_last)
    assert [scaler.is_enabled() for scaler in scalers] == [expected == torch.float16]
