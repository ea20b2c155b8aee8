"""Test-time flip (``ssd eval --flip``, ``ssd predict --flip``, ``ssdcli.load(..., flip=True)``): each image and
its mirror image are detected together and one NMS merges both views' candidates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from ssdcli.core.coder import decode
from ssdcli.core.postprocess import PostprocessSettings
from ssdcli.engine.inference.detectors import NetworkBackend, load_detector, merge_mirrored
from ssdcli.engine.inference.options import DetectOptions
from ssdcli.errors import UsageError

ANCHORS = torch.tensor([[0.2, 0.5, 0.2, 0.4], [0.7, 0.3, 0.3, 0.2]])  # [2, 4] cxcywh


def test_a_mirrored_prediction_lands_on_the_mirror_of_its_box() -> None:
    loc = torch.tensor([[[0.5, -0.2, 0.1, 0.3], [-1.0, 0.4, -0.2, 0.0]]])  # [1, 2, 4] for one image
    conf = torch.randn(1, 2, 3)
    # The same outputs for the mirror image: in the original frame they describe the mirrored boxes.
    merged_conf, merged_loc, merged_anchors = merge_mirrored(torch.cat([conf, conf]), torch.cat([loc, loc]), ANCHORS)
    assert merged_conf.shape == (1, 4, 3) and merged_loc.shape == (1, 4, 4) and merged_anchors.shape == (4, 4)
    assert torch.equal(merged_conf[0, :2], conf[0]) and torch.equal(merged_conf[0, 2:], conf[0])
    plain = decode(loc, ANCHORS)[0]  # [2, 4] xyxy in the mirror image's frame
    expected = torch.stack([1 - plain[:, 2], plain[:, 1], 1 - plain[:, 0], plain[:, 3]], dim=1)  # x -> 1 - x
    torch.testing.assert_close(decode(merged_loc, merged_anchors)[0, 2:], expected)
    torch.testing.assert_close(decode(merged_loc, merged_anchors)[0, :2], plain)


class MirrorBlind:
    """A network that predicts one box of class 1 on the first default box, whatever the image: with test-time
    flip it also predicts, in the original frame, the mirror of that box."""

    def __call__(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        conf = torch.full((batch.shape[0], 2, 2), -10.0)
        conf[:, :, 0] = 10.0  # background everywhere...
        conf[:, 0] = torch.tensor([-10.0, 10.0])  # ...but the first default box
        return conf, torch.zeros(batch.shape[0], 2, 4)


def test_the_backend_returns_both_views_detections() -> None:
    backend = NetworkBackend(MirrorBlind(), ANCHORS)
    batch = torch.zeros(3, 3, 8, 8)
    settings = PostprocessSettings()
    plain = backend(batch, settings)
    flipped = backend(batch, settings, flip=True)
    assert len(flipped) == 3
    for one, both in zip(plain, flipped, strict=True):
        np.testing.assert_allclose(one["boxes"].numpy(), [[0.1, 0.3, 0.3, 0.7]], atol=1e-6)
        # The box and its mirror [0.7, 0.3, 0.9, 0.7] (IoU 0: NMS keeps both), equal scores.
        np.testing.assert_allclose(sorted(both["boxes"].tolist()), [[0.1, 0.3, 0.3, 0.7], [0.7, 0.3, 0.9, 0.7]], atol=1e-6)
        assert both["scores"][0] == both["scores"][1]


def test_flip_makes_detections_mirror_symmetric(checkpoint: Path) -> None:
    """With flip, an image and its mirror image see the same two views: their detections mirror each other."""
    detector = load_detector(checkpoint, options=DetectOptions(conf_threshold=0.05, flip=True))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
    found = detector.detect(image)
    mirrored = detector.detect(np.ascontiguousarray(image[:, ::-1]))
    assert len(found) > 0 and len(found) == len(mirrored)
    width = image.shape[1]
    back = np.stack([width - mirrored.boxes[:, 2], mirrored.boxes[:, 1], width - mirrored.boxes[:, 0], mirrored.boxes[:, 3]], 1)
    order_a = np.lexsort((found.boxes[:, 0], found.scores.round(5)))
    order_b = np.lexsort((back[:, 0], mirrored.scores.round(5)))
    np.testing.assert_allclose(found.boxes[order_a], back[order_b], atol=0.05)
    np.testing.assert_allclose(found.scores[order_a], mirrored.scores[order_b], atol=1e-4)


def test_ssd_eval_flip_records_it_and_onnx_with_nms_refuses(checkpoint: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ssdcli.cli.app import app
    from ssdcli.data.synth import write_synth

    data = tmp_path / "voc"
    write_synth(data, format="voc", images=8, seed=0, image_size=96)
    out = tmp_path / "metrics.json"
    done = CliRunner().invoke(
        app, ["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--split", "val", "--flip", "--json",
              str(out), "--out", str(tmp_path / "runs")]  # fmt: skip
    )
    assert done.exit_code == 0, done.output
    metrics = json.loads(out.read_text())
    assert metrics["flip"] is True and np.isfinite(metrics["mAP"])


def test_a_graph_with_nms_refuses_flip() -> None:
    from ssdcli.engine.inference.onnx_runtime import DecodedBackend

    backend = DecodedBackend.__new__(DecodedBackend)
    backend.built_in = PostprocessSettings()
    with pytest.raises(UsageError, match="NMS built in"):
        backend.check(PostprocessSettings(), DetectOptions(flip=True), Path("model.onnx"))


def test_tiled_detection_keeps_the_flip(checkpoint: Path) -> None:
    from ssdcli.engine.inference.tiled import TiledDetector, Tiling

    detector = load_detector(checkpoint, options=DetectOptions(conf_threshold=0.05, flip=True))
    tiled = TiledDetector(detector, Tiling(64, 0.2))
    assert tiled.flip
    image = np.random.default_rng(1).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    # A window as large as the image: the tiled detector equals the untiled one, flip included.
    found, whole = tiled.detect(image), detector.detect(image)
    np.testing.assert_allclose(found.boxes, whole.boxes, atol=1e-4)
    unflipped = load_detector(checkpoint, options=DetectOptions(conf_threshold=0.05)).detect(image)
    assert len(unflipped) != len(whole) or not np.allclose(unflipped.boxes, whole.boxes)


def test_ssdcli_load_takes_flip_and_tiling(checkpoint: Path) -> None:
    import ssdcli
    from ssdcli.engine.inference.tiled import TiledDetector

    plain = ssdcli.load(checkpoint, conf_threshold=0.05)
    assert not plain.flip and not isinstance(plain, TiledDetector)
    tiled = ssdcli.load(checkpoint, conf_threshold=0.05, flip=True, tile=48, overlap=0.25)
    assert isinstance(tiled, TiledDetector) and tiled.flip and (tiled.tiling.size, tiled.tiling.overlap) == (48, 0.25)
    image = np.random.default_rng(2).integers(0, 256, size=(96, 96, 3), dtype=np.uint8)
    assert len(tiled(image)) == 1  # one image in, its detections out
    with pytest.raises(UsageError, match="tile"):
        ssdcli.load(checkpoint, tile=8)
