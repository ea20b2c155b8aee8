"""`ssd export --to openvino`: a folder (model.xml, model.bin) converted from the verified ONNX file, checked
against PyTorch before it is put in place, and run by `ssd eval --openvino`, `ssd predict --openvino` and
`ssdcli.load`."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ssdcli
from ssdcli.cli.app import main
from ssdcli.engine.inference.loading import load_model


def _openvino():
    return pytest.importorskip("openvino", reason="the optional package openvino is not installed (pip install 'ssdcli[openvino]')")


def test_openvino_export_gives_the_pytorch_outputs(checkpoint: Path, tmp_path: Path) -> None:
    openvino = _openvino()
    pytest.importorskip("onnxruntime", reason="the export goes through ONNX (pip install 'ssdcli[onnx]')")
    out = tmp_path / "model_openvino"
    assert main(["export", "--checkpoint", str(checkpoint), "--to", "openvino", "--out", str(out)]) == 0
    assert sorted(entry.name for entry in out.iterdir()) == ["model.bin", "model.xml"]
    loaded = load_model(checkpoint, "cpu")
    compiled = openvino.Core().compile_model(str(out / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    size = loaded.spec.layout.image_size
    for batch in (1, 4):
        images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(batch)) * 4 - 2
        with torch.no_grad():
            conf, loc = loaded.model(images)
        got = compiled(images.numpy())
        np.testing.assert_allclose(got[compiled.output("conf")], conf.numpy(), atol=1e-4)
        np.testing.assert_allclose(got[compiled.output("loc")], loc.numpy(), atol=1e-4)


def test_openvino_export_carries_the_spec_and_predicts_as_the_checkpoint(checkpoint: Path, tmp_path: Path) -> None:
    _openvino()
    pytest.importorskip("onnxruntime", reason="the export goes through ONNX (pip install 'ssdcli[onnx]')")
    from ssdcli.engine.inference.detectors import load_detector

    assert main(["export", "--checkpoint", str(checkpoint), "--to", "openvino", "--out", str(tmp_path / "ov")]) == 0
    detector = load_detector(tmp_path / "ov")
    assert detector.format == "openvino"
    assert detector.spec == load_model(checkpoint, "cpu").spec
    photo = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    expected = ssdcli.load(checkpoint, conf_threshold=0.05)(photo)[0]
    for given in (tmp_path / "ov", tmp_path / "ov" / "model.xml"):
        got = ssdcli.load(given, conf_threshold=0.05)(photo)[0]
        assert len(got.scores) == len(expected.scores) > 0
        np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-2)
        np.testing.assert_allclose(got.scores, expected.scores, atol=1e-4)


def test_predict_cli_takes_an_openvino_folder(checkpoint: Path, tmp_path: Path) -> None:
    _openvino()
    pytest.importorskip("onnxruntime", reason="the export goes through ONNX (pip install 'ssdcli[onnx]')")
    from ssdcli.data.images import write_image

    assert main(["export", "--checkpoint", str(checkpoint), "--to", "openvino", "--out", str(tmp_path / "ov")]) == 0
    photo = tmp_path / "photo.png"
    write_image(photo, np.random.default_rng(1).integers(0, 256, (64, 80, 3), dtype=np.uint8))
    out = tmp_path / "detections.json"
    args = ["predict", str(photo), "--openvino", str(tmp_path / "ov"), "--json", str(out), "--out", str(tmp_path / "runs")]
    assert main(args + ["--conf", "0.05"]) == 0
    assert out.is_file()


def test_an_openvino_model_that_differs_from_pytorch_is_not_written(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _openvino()
    pytest.importorskip("onnxruntime", reason="the export goes through ONNX (pip install 'ssdcli[onnx]')")
    from ssdcli.engine.inference.openvino_runtime import OpenVinoNetwork

    run = OpenVinoNetwork.run
    monkeypatch.setattr(OpenVinoNetwork, "run", lambda self, images: tuple(a + 0.01 for a in run(self, images)))
    out = tmp_path / "ov"
    assert main(["export", "--checkpoint", str(checkpoint), "--to", "openvino", "--out", str(out)]) == 1
    assert "OpenVINO differs from PyTorch" in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder left


def test_openvino_folder_default_name_and_replacement(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _openvino()
    pytest.importorskip("onnxruntime", reason="the export goes through ONNX (pip install 'ssdcli[onnx]')")
    copy = tmp_path / "best.pt"
    copy.write_bytes(checkpoint.read_bytes())
    assert main(["export", "--checkpoint", str(copy), "--to", "openvino"]) == 0
    folder = tmp_path / "best_openvino"
    assert (folder / "model.xml").is_file()
    assert main(["export", "--checkpoint", str(copy), "--to", "openvino"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(copy), "--to", "openvino", "--force"]) == 0
    (folder / "notes.txt").write_text("mine")
    assert main(["export", "--checkpoint", str(copy), "--to", "openvino", "--force"]) == 2
    assert "holds other files" in capsys.readouterr().err
    assert (folder / "notes.txt").read_text() == "mine"


def test_openvino_missing_is_one_line_naming_the_extra(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    out = tmp_path / "ov"
    assert main(["export", "--checkpoint", str(checkpoint), "--to", "openvino", "--out", str(out)]) == 2
    assert "pip install 'ssdcli[openvino]'" in capsys.readouterr().err
    assert not out.exists()
