"""`ssd eval --onnx` and `--torchscript` evaluate an exported file as `--checkpoint` evaluates its checkpoint: the
same figures, so an export that lost accuracy shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import model_checkpoint, sharpen_class_head
from ssdcli.cli.app import main
from ssdcli.data.synth import SYNTH_CLASSES, write_synth
from ssdcli.engine.checkpoint import save_checkpoint
from ssdcli.models.build import build_model
from ssdcli.models.spec import default_config

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The synthetic set, and an ssd_tiny checkpoint whose class scores are spread far apart (its class head
    scaled up): detections that rank and suppress each other by clear margins, some of them on objects, as a
    trained model's do, without the minutes of training."""
    root = tmp_path_factory.mktemp("exported")
    write_synth(root / "runs" / "1" / "data", format="voc", images=40, seed=0)
    torch.manual_seed(0)
    model = build_model(default_config("ssd_tiny", num_classes=4))
    sharpen_class_head(model, 25.0)
    classes = ("background", *SYNTH_CLASSES)
    path = save_checkpoint(model_checkpoint(model, classes), root / "m.pt")
    return root, path


def _metrics(root: Path, name: str, model: list[str]) -> dict:
    out = root / f"{name}.json"
    data = root / "runs" / "1" / "data"
    args = ["eval", *model, "--data", str(data), "--split", "val", "--out", str(root / "eval"), "--device", "cpu"]
    assert main(args + ["--json", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.slow
def test_exported_files_keep_the_checkpoints_figures(trained: tuple[Path, Path]) -> None:
    root, checkpoint = trained
    reference = _metrics(root, "checkpoint", ["--checkpoint", str(checkpoint)])
    assert reference["mAP"] > 0.0, "the model finds nothing: the comparison would mean nothing"
    files = {
        "onnx": root / "m.onnx",
        "onnx-nms": root / "m-nms.onnx",
        "torchscript": root / "m.torchscript.pt",
        "onnx-pixels": root / "m-pixels.onnx",
        "onnx-pixels-nms": root / "m-pixels-nms.onnx",
    }
    assert main(["export", "--checkpoint", str(checkpoint), "--to", "onnx", "--out", str(files["onnx"])]) == 0
    args = ["export", "--checkpoint", str(checkpoint), "--to", "onnx", "--with-nms", "--out", str(files["onnx-nms"])]
    assert main(args) == 0
    args = ["export", "--checkpoint", str(checkpoint), "--to", "torchscript", "--out", str(files["torchscript"])]
    assert main(args) == 0
    for name, extra in (("onnx-pixels", []), ("onnx-pixels-nms", ["--with-nms"])):
        args = ["export", "--checkpoint", str(checkpoint), "--to", "onnx", "--with-preprocess", *extra]
        assert main(args + ["--out", str(files[name])]) == 0
    try:
        import openvino  # noqa: F401
    except ImportError:
        pass
    else:
        files["openvino"] = root / "m_openvino"
        assert main(["export", "--checkpoint", str(checkpoint), "--to", "openvino", "--out", str(files["openvino"])]) == 0
    for name, path in files.items():
        flag = {"torchscript": "--torchscript", "openvino": "--openvino"}.get(name, "--onnx")
        got = _metrics(root, name, [flag, str(path)])
        assert got["mAP"] == pytest.approx(reference["mAP"], abs=1e-3), name
        assert got["coco"]["AP"] == pytest.approx(reference["coco"]["AP"], abs=1e-3), name
        assert got["coco"]["AR100"] == pytest.approx(reference["coco"]["AR100"], abs=1e-3), name


def test_one_model_at_a_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["eval", "--checkpoint", "a.pt", "--onnx", "b.onnx", "--data", str(tmp_path)]
    assert main(args) == 2
    assert "give one model" in capsys.readouterr().err
    assert main(["eval", "--onnx", str(tmp_path / "missing.onnx"), "--data", str(tmp_path)]) == 2


def test_preprocess_in_the_graph_takes_pixels_and_gives_pixel_boxes(trained: tuple[Path, Path]) -> None:
    """--with-preprocess: uint8 RGB [B, S, S, 3] in; the network's outputs as PyTorch gives them for the same pixels
    scaled and normalised by hand; with NMS, boxes in pixels of the S x S input."""
    import numpy as np
    import onnxruntime

    from ssdcli import default_boxes, postprocess
    from ssdcli.core.postprocess import PostprocessSettings
    from ssdcli.engine.inference.loading import load_model

    root, checkpoint = trained
    loaded = load_model(checkpoint)
    size = loaded.spec.layout.image_size
    raw, nms = root / "pixels.onnx", root / "pixels-nms.onnx"
    base = ["export", "--checkpoint", str(checkpoint), "--to", "onnx", "--with-preprocess"]
    assert main(base + ["--out", str(raw)]) == 0 and main(base + ["--with-nms", "--out", str(nms)]) == 0
    pixels = np.random.default_rng(3).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    mean = torch.tensor(loaded.spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.spec.std).view(1, 3, 1, 1)
    images = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.no_grad():
        conf, loc = loaded.model(images)
    got = onnxruntime.InferenceSession(str(raw)).run(["conf", "loc"], {"images": pixels})
    np.testing.assert_allclose(got[0], conf.numpy(), atol=1e-3)
    np.testing.assert_allclose(got[1], loc.numpy(), atol=1e-3)
    boxes, scores, labels, index = onnxruntime.InferenceSession(str(nms)).run(None, {"images": pixels})
    expected = postprocess(conf, loc, default_boxes(loaded.spec.layout), PostprocessSettings(0.01, 0.45, 400))[0]
    mine = index == 0
    assert mine.sum() >= len(expected["scores"]) > 0

    def in_order(found: np.ndarray) -> np.ndarray:  # rows sorted by their values: the same set in the same order
        return found[np.lexsort(found.T[::-1])]

    top = np.argsort(-scores[mine], kind="stable")[: len(expected["scores"])]
    np.testing.assert_allclose(
        in_order(boxes[mine][top].astype(np.float64)), in_order(expected["boxes"].double().numpy() * size), atol=1e-2
    )
