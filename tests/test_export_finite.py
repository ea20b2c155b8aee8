"""A NaN never matches: non-finite outputs on either side fail every parity check of `ssd export` (and the check
that a distributed run's processes agree), and a checkpoint whose outputs are not finite is refused before
anything is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import model_checkpoint
from ssdcli.cli.app import main
from ssdcli.data.synth import SYNTH_CLASSES
from ssdcli.engine.checkpoint import save_checkpoint
from ssdcli.engine.export import exporter
from ssdcli.engine.export.parity import ExportFailed, largest_difference
from ssdcli.models.build import build_model
from ssdcli.models.spec import default_config


@pytest.fixture(scope="module")
def nan_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ssd_tiny checkpoint whose weights are all NaN."""
    names = ("background", *SYNTH_CLASSES)
    model = build_model(default_config("ssd_tiny", num_classes=len(names)))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    return save_checkpoint(model_checkpoint(model, names), tmp_path_factory.mktemp("nan") / "nan.pt")


@pytest.mark.parametrize("target", [["--to", "onnx"], ["--to", "onnx", "--with-nms"], ["--to", "torchscript"]])
def test_a_checkpoint_with_nan_weights_is_not_exported(
    target: list[str], nan_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if target[1] == "onnx":
        pytest.importorskip("onnxruntime")
    out = tmp_path / "model.out"
    assert main(["export", "--checkpoint", str(nan_checkpoint), *target, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {nan_checkpoint}: the model's outputs are not finite"), err
    assert "weight tensors hold NaN or infinite values" in err[0]
    assert list(tmp_path.iterdir()) == []  # no file, no temporary


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("side", [0, 1])
def test_a_non_finite_value_on_either_side_fails_the_comparison(bad: float, side: int) -> None:
    outputs = [[torch.zeros(2, 3), torch.ones(4)], [np.zeros((2, 3), np.float32), np.ones(4, np.float32)]]
    outputs[side][1][2] = bad
    with pytest.raises(ExportFailed, match=f"{('PyTorch', 'ONNX Runtime')[side]}'s outputs are not finite \\(1 NaN"):
        largest_difference(outputs[0], outputs[1], ("PyTorch", "ONNX Runtime"), "m.onnx")


def test_outputs_of_another_shape_fail_the_comparison() -> None:
    with pytest.raises(ExportFailed, match="differ in number or shape"):
        largest_difference([torch.zeros(2, 3)], [np.zeros((3, 2), np.float32)], ("PyTorch", "TorchScript"), "m.pt")
    assert largest_difference([torch.zeros(0, 4)], [np.zeros((0, 4), np.float32)], ("a", "b"), "m") == 0.0


def test_nan_boxes_of_the_nms_graph_fail_its_check() -> None:
    expected = (torch.tensor([[0.1, 0.1, 0.5, 0.5]]), torch.tensor([0.9]), torch.tensor([1]), torch.tensor([0]))
    got = [np.array([[np.nan, 0.1, 0.5, 0.5]], np.float32), np.array([0.9], np.float32), np.array([1]), np.array([0])]
    with pytest.raises(ExportFailed, match="the ONNX NMS graph's outputs are not finite"):
        exporter._detection_difference(expected, got, Path("m.onnx"))


def test_an_int8_file_with_nan_outputs_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime.quantization")
    from ssdcli.engine.export.quantize import MIN_CHECK_IMAGES, quantize_prepared
    from ssdcli.models.spec import ModelSpec

    class Broken(torch.nn.Module):  # images [B, 3, 8, 8] -> conf [B, 64, 2] NaN, loc [B, 64, 4]
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 6, 1)

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            features = self.conv(images).flatten(2).transpose(1, 2)  # [B, 64, 6]
            return features[..., :2] * float("nan"), features[..., 2:]

    fp32, out = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    torch.onnx.export(Broken(), (torch.zeros(1, 3, 8, 8),), str(fp32), input_names=["images"],
                      output_names=["conf", "loc"], dynamo=False)  # fmt: skip
    prepared = np.random.default_rng(0).normal(size=(MIN_CHECK_IMAGES + 4, 3, 8, 8)).astype(np.float32)
    spec = ModelSpec(default_config("ssd_tiny", num_classes=2), ("background", "a"), (0, 1))  # not reached
    with pytest.raises(ExportFailed, match="the FP32 file's outputs are not finite"):
        quantize_prepared(fp32, out, prepared, spec)
    assert not out.exists()


@pytest.mark.parametrize("sums", [[1.0, float("nan")], [float("nan"), 1.0], [float("nan"), float("nan")]])
def test_non_finite_weights_fail_the_check_that_processes_agree(sums: list[float]) -> None:
    from types import SimpleNamespace

    from ssdcli.engine.train.loop import _check_ranks_agree
    from ssdcli.errors import SsdcliError

    context = SimpleNamespace(gather=lambda value: sums)
    with pytest.raises(SsdcliError, match="different or non-finite weights"):
        _check_ranks_agree(torch.nn.Linear(2, 2), context)  # type: ignore[arg-type]


def test_a_failed_int8_check_names_the_file_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime.quantization")
    from ssdcli.data.synth import write_synth
    from ssdcli.engine.export import quantize

    write_synth(tmp_path / "data", format="voc", images=12, seed=0, image_size=64)
    names = ("background", *SYNTH_CLASSES)
    torch.manual_seed(0)
    checkpoint = save_checkpoint(
        model_checkpoint(build_model(default_config("ssd_tiny", num_classes=len(names))), names), tmp_path / "m.pt"
    )
    monkeypatch.setattr(quantize, "MIN_DETECTION_AP", 1.5)  # no file can pass
    out = tmp_path / "out" / "m_int8.onnx"
    args = ["export", "--checkpoint", str(checkpoint), "--to", "onnx", "--int8", "--out", str(out)]
    assert main(args + ["--calibration", str(tmp_path / "data" / "JPEGImages")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {out}: INT8 detections match the FP32 file's only"), err
    assert list((tmp_path / "out").iterdir()) == []
