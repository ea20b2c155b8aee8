"""`ssd export --with-nms`: the parity check holds for untrained (dense) models and catches a graph that decides
differently from PyTorch; a missing ONNX package is a one-line error."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from torchvision.ops import box_iou

from conftest import model_checkpoint
from ssdcli.cli.app import main
from ssdcli.core.anchors import default_boxes
from ssdcli.core.coder import decode
from ssdcli.engine.checkpoint import save_checkpoint
from ssdcli.engine.export import exporter as export_module
from ssdcli.engine.export.exporter import DecodedDetector, separated_head_outputs
from ssdcli.engine.inference.loading import load_model
from ssdcli.models.build import build_model
from ssdcli.models.spec import default_config

CLASSES = ("background", "a", "b", "c", "d", "e")


@pytest.fixture(scope="module")
def dense_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ssd_tiny whose class predictor gives nearly the same scores everywhere (as a randomly
    initialised SSDLite head does): hundreds of candidates per (image, class) whose order and NMS decisions are
    decided by float rounding, where checking the whole graph on sample images made every export fail."""
    torch.manual_seed(0)
    model = build_model(default_config("ssd_tiny", num_classes=len(CLASSES)))
    with torch.no_grad():
        for predictor in model.head.conf:
            [conv for conv in predictor.modules() if isinstance(conv, torch.nn.Conv2d)][-1].weight.mul_(1e-3)
    path = tmp_path_factory.mktemp("dense") / "best.pt"
    save_checkpoint(model_checkpoint(model, CLASSES), path)
    return path


def test_dense_untrained_model_exports_with_nms(dense_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "dense.onnx"
    assert main(["export", "--checkpoint", str(dense_checkpoint), "--to", "onnx", "--with-nms", "--out", str(out)]) == 0
    loaded = load_model(dense_checkpoint, "cpu")
    module = DecodedDetector(loaded.model.eval(), default_boxes(loaded.spec.layout), 0.01, 0.45, 400).eval()
    images = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = module(images)
    got = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"images": images.numpy()})
    assert expected[0].shape[0] > 1000  # dense: this is the hard case
    # Which of hundreds of equal-scoring boxes survive is decided by rounding, so only the counts are compared:
    # detections per (image, class) agree within 1 %.
    want = np.zeros((2, len(CLASSES)), dtype=np.int64)
    have = np.zeros_like(want)
    np.add.at(want, (expected[3].numpy(), expected[2].numpy()), 1)
    np.add.at(have, (got[3], got[2]), 1)
    assert np.abs(want - have).sum() <= 0.01 * want.sum()


def test_separated_inputs_keep_every_group_clear_of_the_threshold() -> None:
    anchors = default_boxes("ssd300")
    conf, loc = separated_head_outputs(anchors, 21, 3, 0.45, seed=3)
    scores = torch.softmax(conf, dim=-1)[:, :, 1:]  # [B, A, C-1]
    assert bool(((scores > 0.5) | (scores < 1e-3)).all())  # no score near the 0.01 threshold
    boxes = decode(loc.double(), anchors.double()).clamp(0, 1)
    for image in range(3):
        for c in range(20):
            picked = boxes[image, scores[image, :, c] > 0.5]  # [K, 4]
            assert picked.shape[0] >= 2
            iou = box_iou(picked, picked)
            off_diagonal = ~torch.eye(picked.shape[0], dtype=torch.bool)
            assert bool(((iou[off_diagonal] - 0.45).abs() >= 1e-3).all())


def test_export_fails_when_the_graph_suppresses_differently(
    dense_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    symbolic = export_module.GroupedNms.symbolic

    def looser(g, boxes, scores, iou_threshold, score_threshold):  # the graph gets another IoU threshold
        return symbolic(g, boxes, scores, iou_threshold + 0.2, score_threshold)

    monkeypatch.setattr(export_module.GroupedNms, "symbolic", staticmethod(looser))
    out = tmp_path / "wrong.onnx"
    code = main(["export", "--checkpoint", str(dense_checkpoint), "--to", "onnx", "--with-nms", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert "differs from PyTorch" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.iterdir())  # no file, no temporary left behind


def test_missing_onnx_package_is_a_one_line_error(
    dense_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    code = main(["export", "--checkpoint", str(dense_checkpoint), "--to", "onnx", "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert code == 2
    assert "ssdcli[onnx]" in err and "Traceback" not in err
    assert np.all([not p.name.endswith(".onnx") for p in tmp_path.iterdir()])
