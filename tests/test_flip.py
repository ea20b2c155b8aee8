"""Test-time flip (``ssd eval --flip``, ``ssd predict --flip``, ``ssdcli.load(..., flip=True)``): each image and
its mirror image are detected together; on a left-right symmetric layout both views' predictions are averaged per
default box, otherwise one NMS merges both views' candidates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from ssdcli.core.anchors import default_boxes
from ssdcli.core.coder import decode
from ssdcli.core.postprocess import PostprocessSettings
from ssdcli.engine.inference.detectors import (
    NetworkBackend,
    average_mirrored,
    load_detector,
    merge_mirrored,
    mirror_partners,
)
from ssdcli.engine.inference.options import DetectOptions
from ssdcli.errors import UsageError

ANCHORS = torch.tensor([[0.2, 0.5, 0.2, 0.4], [0.7, 0.3, 0.3, 0.2]])  # [2, 4] cxcywh, no mirror partners
SYMMETRIC = torch.tensor([[0.2, 0.5, 0.2, 0.4], [0.5, 0.3, 0.3, 0.2], [0.8, 0.5, 0.2, 0.4]])  # partners 2, 1, 0


def test_mirror_partners_pair_each_default_box_with_its_mirror_image() -> None:
    assert mirror_partners(SYMMETRIC).tolist() == [2, 1, 0]
    assert mirror_partners(ANCHORS) is None
    # SSD300's grid is not symmetric (38 cells of 8 px span 304 px of a 300 px image): no partners, NMS merge.
    assert mirror_partners(default_boxes("ssd300")) is None
    boxes = default_boxes("ssd512")
    partners = mirror_partners(boxes)  # 64 cells of 8 px span its 512 px input: symmetric
    assert partners is not None
    assert torch.equal(partners[partners], torch.arange(len(boxes)))
    torch.testing.assert_close(boxes[partners, 0], 1 - boxes[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(boxes[partners, 1:], boxes[:, 1:])


def test_averaged_views_give_the_mean_box_and_the_mean_class_probabilities() -> None:
    partners = mirror_partners(SYMMETRIC)
    loc = torch.randn(2, 3, 4)  # the image, then its mirror image
    conf = torch.randn(2, 3, 4)
    merged_conf, merged_loc = average_mirrored(conf, loc, partners)
    assert merged_conf.shape == (1, 3, 4) and merged_loc.shape == (1, 3, 4)
    # Each view decoded on its own, the mirror view's boxes mirrored back (x -> 1 - x) by hand.
    plain = decode(loc[:1], SYMMETRIC)[0]  # [3, 4] xyxy
    seen_mirrored = decode(loc[1:], SYMMETRIC)[0]
    back = torch.stack([1 - seen_mirrored[:, 2], seen_mirrored[:, 1], 1 - seen_mirrored[:, 0], seen_mirrored[:, 3]], 1)
    back = back[partners]  # the mirror view's box for default box i was predicted on its partner
    merged = decode(merged_loc, SYMMETRIC)[0]
    centre = lambda b: (b[:, :2] + b[:, 2:]) / 2  # noqa: E731
    size = lambda b: b[:, 2:] - b[:, :2]  # noqa: E731
    torch.testing.assert_close(centre(merged), (centre(plain) + centre(back)) / 2)
    torch.testing.assert_close(size(merged), (size(plain) * size(back)).sqrt())  # the mean of log sizes
    probabilities = torch.softmax(conf, -1)
    torch.testing.assert_close(torch.softmax(merged_conf, -1)[0], (probabilities[0] + probabilities[1, partners]) / 2)


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


def test_without_partners_the_backend_returns_both_views_detections() -> None:
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


def test_with_partners_views_that_disagree_halve_each_others_scores() -> None:
    """The mirror-blind network on a symmetric layout: each view finds class 1 on a different default box (the
    image's first, the mirror image's first, which is the image's last); averaged, each box keeps half its score."""

    def blind(batch: Tensor) -> tuple[Tensor, Tensor]:
        conf = torch.full((batch.shape[0], 3, 2), -10.0)
        conf[:, :, 0] = 10.0
        conf[:, 0] = torch.tensor([-10.0, 10.0])
        return conf, torch.zeros(batch.shape[0], 3, 4)

    backend = NetworkBackend(blind, SYMMETRIC)
    settings = PostprocessSettings(score_threshold=0.01)
    plain = backend(torch.zeros(1, 3, 8, 8), settings)[0]
    both = backend(torch.zeros(1, 3, 8, 8), settings, flip=True)[0]
    assert len(plain["boxes"]) == 1 and plain["scores"][0] > 0.99
    np.testing.assert_allclose(sorted(both["boxes"].tolist()), [[0.1, 0.3, 0.3, 0.7], [0.7, 0.3, 0.9, 0.7]], atol=1e-6)
    np.testing.assert_allclose(both["scores"].numpy(), [0.5, 0.5], atol=1e-4)


def test_a_mirror_equivariant_network_detects_the_same_with_and_without_flip() -> None:
    """When the mirror view agrees with the image (a network equivariant under mirroring), averaging changes
    nothing: the flipped detections are the plain ones."""
    partners = mirror_partners(SYMMETRIC)
    torch.manual_seed(0)
    conf_of_image, loc_of_image = torch.randn(1, 3, 2), torch.randn(1, 3, 4)
    conf_of_mirror, loc_of_mirror = conf_of_image[:, partners], loc_of_image[:, partners].clone()
    loc_of_mirror[..., 0] = -loc_of_mirror[..., 0]

    def equivariant(batch: Tensor) -> tuple[Tensor, Tensor]:
        views = batch.shape[0]
        return (torch.cat([conf_of_image, conf_of_mirror][:views]), torch.cat([loc_of_image, loc_of_mirror][:views]))

    backend = NetworkBackend(equivariant, SYMMETRIC)
    settings = PostprocessSettings(score_threshold=0.01)
    plain = backend(torch.zeros(1, 3, 8, 8), settings)[0]
    both = backend(torch.zeros(1, 3, 8, 8), settings, flip=True)[0]
    for key in ("boxes", "scores", "labels"):
        torch.testing.assert_close(both[key], plain[key])


def test_flip_makes_detections_mirror_symmetric(checkpoint: Path) -> None:
    """With flip, an image and its mirror image see the same two views: their detections mirror each other."""
    detector = load_detector(checkpoint, options=DetectOptions(conf_threshold=0.05, flip=True))
    assert isinstance(detector.backend, NetworkBackend) and detector.backend.mirror is not None  # views averaged
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


def test_ssd_eval_and_predict_flip_record_it(checkpoint: Path, tmp_path: Path) -> None:
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
    predictions = tmp_path / "predictions.json"
    images = str(data / "JPEGImages")
    for flip in ([], ["--flip"]):
        done = CliRunner().invoke(
            app, ["predict", images, "--checkpoint", str(checkpoint), "--json", str(predictions), "--force", *flip,
                  "--out", str(tmp_path / "predicted")],  # fmt: skip
        )
        assert done.exit_code == 0, done.output
        assert json.loads(predictions.read_text()).get("flip", False) is bool(flip)


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
