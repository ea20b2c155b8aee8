"""`ssd export --int8`: ONNX Runtime static quantisation, calibrated on real images, checked against FP32."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ssdcli.cli.app import main
from ssdcli.data.synth import SYNTH_CLASSES, write_synth
from ssdcli.engine.checkpoint import save_checkpoint
from ssdcli.models.build import build_model
from ssdcli.models.config import default_config

from conftest import model_checkpoint

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("int8")
    data = root / "data"
    write_synth(data, format="voc", images=30, seed=0)
    torch.manual_seed(0)
    model = build_model(default_config("ssd_tiny", num_classes=4))
    state = {"config": {"data": str(data), "train_split": "train", "data_format": "auto"}}
    checkpoint = replace(model_checkpoint(model, ("background", *SYNTH_CLASSES)), train_state=state)
    return root, save_checkpoint(checkpoint, root / "m.pt")


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("calibration", ["folder", "training split"])
def test_int8_export_is_quantised_and_keeps_metadata(setup: tuple[Path, Path], calibration: str) -> None:
    root, checkpoint = setup
    fp32, int8 = root / f"fp32-{calibration}.onnx", root / f"int8-{calibration}.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--to", "onnx", "--out", str(fp32)]) == 0
    args = ["export", "--checkpoint", str(checkpoint), "--to", "onnx", "--int8", "--out", str(int8)]
    if calibration == "folder":
        args += ["--calibration", str(root / "data" / "JPEGImages")]
    assert main(args) == 0
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(int8) and "QuantizeLinear" not in _ops(fp32)
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size  # 8-bit weights
    meta = {p.key: p.value for p in onnx.load(str(int8)).metadata_props}
    assert json.loads(meta["ssdcli"])["class_names"] == ["background", *SYNTH_CLASSES]
    # Outputs close to the FP32 file's on an image it was not calibrated on (an independent ONNX Runtime run).
    image = np.random.default_rng(5).normal(size=(1, 3, 160, 160)).astype(np.float32)
    runs = [onnxruntime.InferenceSession(str(p)).run(["loc"], {"images": image})[0] for p in (fp32, int8)]
    assert np.corrcoef(runs[0].ravel(), runs[1].ravel())[0, 1] > 0.95
    assert not list(root.glob(".*.tmp")) and not list(root.glob(".*.onnx"))
    # It runs wherever an exported file runs.
    args = ["eval", "--onnx", str(int8), "--data", str(root / "data"), "--split", "val", "--out", str(root / "eval")]
    assert main(args + ["--json", str(root / f"{calibration}.json")]) == 0


def test_int8_usage_errors(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root, checkpoint = setup
    base = ["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "q.onnx")]
    assert main(base + ["--to", "torchscript", "--int8"]) == 2
    assert main(base + ["--to", "onnx", "--int8", "--with-nms"]) == 2
    assert main(base + ["--to", "onnx", "--calibration", str(root)]) == 2
    (tmp_path / "few").mkdir()
    assert main(base + ["--to", "onnx", "--int8", "--calibration", str(tmp_path / "few")]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 4 and "at least" in err
    assert not (tmp_path / "q.onnx").exists()
