"""Mosaic augmentation (data/mosaic.py): four images at the input's scale, 2 x 2, and an S x S window; objects
keep their size at inference and are kept, clipped, while a tenth of their area and 2 px of each side remain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ssdcli.config import AugmentSettings
from ssdcli.data.dataset import DetectionDataset, open_index
from ssdcli.data.mosaic import MosaicPart, mosaic
from ssdcli.data.synth import write_synth
from ssdcli.errors import UsageError

S = 64


def _part(value: int, box: list[float], label: int, size: tuple[int, int] = (128, 256)) -> MosaicPart:
    """A flat image of ``value`` (height, width ``size``) with one box."""
    image = np.full((*size, 3), value, dtype=np.uint8)
    return MosaicPart(image, np.array([box], np.float32), np.array([label]), np.zeros(1, bool))


def test_the_window_shows_each_image_at_the_input_scale() -> None:
    # Four 128 x 256 (h x w) images, each resized to 64 x 64: x times 1/4, y times 1/2; one box each.
    parts = [
        _part(10, [0, 0, 40, 20], 1),  # -> [0, 0, 10, 10] on the canvas: outside the window
        _part(20, [24, 80, 64, 100], 2),  # -> [6, 40, 16, 50] + (64, 0) = [70, 40, 80, 50]
        _part(30, [0, 0, 4, 4], 3),  # -> [0, 0, 1, 2] + (0, 64): outside
        _part(40, [96, 48, 144, 72], 4),  # -> [24, 24, 36, 36] + (64, 64) = [88, 88, 100, 100]
    ]
    window, boxes, labels, ignore = mosaic(parts, S, (32, 32))  # the canvas' [32, 96) x [32, 96)
    assert window.shape == (S, S, 3) and window.dtype == np.uint8
    # A quarter of each image, in order.
    assert (window[0, 0, 0], window[0, -1, 0], window[-1, 0, 0], window[-1, -1, 0]) == (10, 20, 30, 40)
    assert labels.tolist() == [2, 4] and ignore.tolist() == [False, False]
    # In the window's pixels; box 4 cut at the window's edge (64 of its 144 px^2 remain: kept).
    np.testing.assert_allclose(boxes, [[38, 8, 48, 18], [56, 56, 64, 64]])


def test_objects_cut_by_the_window_are_clipped_and_sizes_kept() -> None:
    parts = [_part(v, [96, 32, 160, 96], v) for v in (1, 2, 3, 4)]  # each -> [24, 16, 40, 48] (16 x 32)
    _, boxes, labels, _ = mosaic(parts, S, (0, 0))  # the top-left image alone
    assert labels.tolist() == [1]
    np.testing.assert_allclose(boxes, [[24, 16, 40, 48]])  # the size it has on a 64 px input
    _, boxes, labels, _ = mosaic(parts, S, (30, 0))  # box 1 -> [-6, 16, 10, 48], box 2 -> [58, 16, 74, 48]
    assert labels.tolist() == [1, 2] and boxes.tolist() == [[0, 16, 10, 48], [58, 16, 64, 48]]
    _, boxes, labels, _ = mosaic(parts, S, (39, 0))  # 1 px of box 1 left: dropped
    assert labels.tolist() == [2] and boxes.tolist() == [[49, 16, 64, 48]]
    with pytest.raises(ValueError, match="outside"):
        mosaic(parts, S, (S + 1, 0))


def test_training_samples_with_mosaic_are_deterministic_and_sized(tmp_path: Path) -> None:
    write_synth(tmp_path / "voc", format="voc", images=12, seed=0, image_size=96)
    index = open_index(tmp_path / "voc", "train")
    dataset = DetectionDataset(index, S, True, seed=3, mosaic=1.0)
    image, target = dataset[0]
    again, target_again = dataset[0]
    assert image.shape == (3, S, S) and torch.equal(image, again)
    assert torch.equal(target["boxes"], target_again["boxes"])
    assert bool(((target["boxes"] >= 0) & (target["boxes"] <= 1)).all())
    assert target["labels"].shape[0] == target["boxes"].shape[0] == target["ignore"].shape[0]
    # A mosaic sample holds objects of other images: some sample has more objects than its own image.
    counts = [int(dataset[i][1]["labels"].numel()) for i in range(len(dataset))]
    assert any(count > record.num_objects for count, record in zip(counts, index.records, strict=True))
    # Evaluation never draws a mosaic.
    assert DetectionDataset(index, S, False, mosaic=1.0).mosaic == 0.0


def test_mosaic_share_is_checked() -> None:
    with pytest.raises(UsageError, match="mosaic"):
        AugmentSettings(mosaic=1.5)


def test_the_last_share_of_the_epochs_has_no_mosaics() -> None:
    augment = AugmentSettings(mosaic=0.5, mosaic_close=0.2)
    assert [augment.mosaic_at(epoch, 10) for epoch in range(10)] == [0.5] * 8 + [0.0] * 2
    assert augment.mosaic_at(0, None) == 0.5  # a time budget's first epoch: the schedule is not known yet
    assert [AugmentSettings(mosaic=1.0, mosaic_close=0.15).mosaic_at(epoch, 3) for epoch in range(3)] == [1.0] * 3
    assert AugmentSettings(mosaic=1.0, mosaic_close=1.0).mosaic_at(0, 4) == 0.0
    with pytest.raises(UsageError, match="mosaic_close"):
        AugmentSettings(mosaic_close=-0.1)


@pytest.mark.slow
def test_a_run_draws_mosaics_until_its_closing_epochs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ssdcli.engine.train.loop as loop
    from ssdcli.config import TrainConfig

    epochs_with_mosaics: list[int] = []
    drawn = DetectionDataset._mosaic_sample

    def spy(self: DetectionDataset, *args: object) -> object:
        epochs_with_mosaics.append(self.epoch)
        return drawn(self, *args)

    monkeypatch.setattr(DetectionDataset, "_mosaic_sample", spy)
    config = TrainConfig().updated(
        out=tmp_path, epochs=4, mosaic=1.0, mosaic_close=0.5, batch_size=4, synth_images=16, workers=0,
        device="cpu", max_steps_per_epoch=1, verify_images=False, eval_every=0,
    )  # fmt: skip
    assert len(loop.train(config, lambda event: None).history) == 4
    assert sorted(set(epochs_with_mosaics)) == [0, 1] and len(epochs_with_mosaics) == 2 * 4  # a batch of 4 each
    saved = TrainConfig.from_dict(json.loads((tmp_path / "1" / "config.json").read_text()))
    assert saved.augment.mosaic_close == 0.5
