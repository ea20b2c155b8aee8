"""Default boxes against torchvision's DefaultBoxGenerator, counts, caching and the layout as data."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_convert

from ssdcli import BUILTIN_LAYOUTS, AnchorLayout, default_boxes, get_layout


def torchvision_boxes_cxcywh(generator: DefaultBoxGenerator, image_size: int, grids: tuple[int, ...]) -> torch.Tensor:
    """[A, 4] cxcywh normalised from the generator's public forward (which returns xyxy pixels per image)."""
    images = ImageList(torch.zeros(1, 3, image_size, image_size), [(image_size, image_size)])
    features = [torch.zeros(1, 1, f, f) for f in grids]
    xyxy_pixels = generator(images, features)[0].double()
    return box_convert(xyxy_pixels / image_size, "xyxy", "cxcywh")


SSD300_TORCHVISION = dict(
    aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
    scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
    steps=[8, 16, 32, 64, 100, 300],
)


@pytest.mark.parametrize("clip", [True, False])
def test_ssd300_matches_torchvision(clip: bool) -> None:
    generator = DefaultBoxGenerator(**SSD300_TORCHVISION, clip=clip)
    expected = torchvision_boxes_cxcywh(generator, 300, (38, 19, 10, 5, 3, 1))
    layout = dataclasses.replace(get_layout("ssd300"), clip=clip)
    ours = default_boxes(layout, dtype=torch.float64)
    assert ours.shape == expected.shape == (8732, 4)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)


def test_ssd300_clip_changes_only_oversized_boxes() -> None:
    unclipped = default_boxes("ssd300")
    clipped = default_boxes(dataclasses.replace(get_layout("ssd300"), clip=True))
    changed = (unclipped != clipped).any(dim=1)
    assert bool(changed.any())
    assert bool((unclipped[changed][:, 2:] > 1).any(dim=1).all())
    assert float(clipped[:, 2:].max()) == 1.0


def test_ssdlite320_matches_torchvision() -> None:
    generator = DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95)
    expected = torchvision_boxes_cxcywh(generator, 320, (20, 10, 5, 3, 2, 1))
    ours = default_boxes("ssdlite320", dtype=torch.float64)
    assert ours.shape == expected.shape == (3234, 4)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)


def test_ssd512_matches_torchvision_with_the_caffe_scales() -> None:
    """SSD512's sizes 35.84 ... 537.6 px are the scales 0.07, 0.15, 0.3 ... 1.05 of a 512 input."""
    generator = DefaultBoxGenerator(
        [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]],
        scales=[0.07, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.05],
        steps=[8, 16, 32, 64, 128, 256, 512],
        clip=False,
    )
    expected = torchvision_boxes_cxcywh(generator, 512, (64, 32, 16, 8, 4, 2, 1))
    ours = default_boxes("ssd512", dtype=torch.float64)
    assert ours.shape == expected.shape == (24564, 4)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("name", "count"), [("ssd300", 8732), ("ssd512", 24564), ("ssdlite320", 3234)])
def test_counts(name: str, count: int) -> None:
    assert default_boxes(name).shape == (count, 4)
    layout = get_layout(name)
    assert layout.num_anchors == count
    assert int(layout.layer_index().bincount().sum()) == count


def test_ssd300_first_cell_by_hand() -> None:
    """DESIGN.md 1.1: cell (0, 0) of conv4_3, centre 4/300, sizes 21 and sqrt(21 * 45), then ratios 2 and 1/2."""
    c = 4.0 / 300
    s, s_prime = 21.0 / 300, (21.0 * 45.0) ** 0.5 / 300
    r = 2.0**0.5
    expected = torch.tensor(
        [[c, c, s, s], [c, c, s_prime, s_prime], [c, c, s * r, s / r], [c, c, s / r, s * r]], dtype=torch.float64
    )
    torch.testing.assert_close(default_boxes("ssd300", dtype=torch.float64)[:4], expected, rtol=0, atol=1e-12)
    # The next box is cell (0, 1): same row, next column.
    second = default_boxes("ssd300", dtype=torch.float64)[4]
    torch.testing.assert_close(second[:2], torch.tensor([12.0 / 300, c], dtype=torch.float64), rtol=0, atol=1e-12)


def test_last_layer_is_one_centred_cell() -> None:
    last = default_boxes("ssd300")[-4:]
    assert torch.equal(last[:, :2], torch.full((4, 2), 0.5))


def test_cache_returns_the_same_tensor() -> None:
    first = default_boxes("ssd300")
    assert default_boxes("ssd300") is first
    assert default_boxes(get_layout("ssd300")) is first
    assert default_boxes("ssd300", dtype=torch.float64) is not first
    assert default_boxes("ssd300", dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("name", sorted(BUILTIN_LAYOUTS))
def test_layout_dict_round_trip(name: str) -> None:
    layout = BUILTIN_LAYOUTS[name]
    data = json.loads(json.dumps(layout.to_dict()))
    assert AnchorLayout.from_dict(data) == layout


def test_from_dict_defaults_clip_to_false() -> None:
    data = BUILTIN_LAYOUTS["ssd300"].to_dict()
    del data["clip"]
    assert AnchorLayout.from_dict(data).clip is False


def _ssd300_fields(**changes: object) -> dict[str, object]:
    fields = BUILTIN_LAYOUTS["ssd300"].to_dict()
    fields.update(changes)
    return fields


@pytest.mark.parametrize(
    "changes",
    [
        {"image_size": 0},
        {"feature_maps": []},
        {"feature_maps": [38, 19, 10, 5, 3, 0]},
        {"steps": [8, 16, 32]},
        {"steps": [8, 16, 32, 64, 100, -1]},
        {"sizes": [21, 45, 99, 153, 207, 261]},
        {"sizes": [21, 45, 99, 153, 207, 261, 0]},
        {"aspect_ratios": [[2]] * 5},
        {"aspect_ratios": [[2], [2], [2], [2], [2], [-2]]},
    ],
)
def test_bad_layout_raises(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="anchor layout"):
        AnchorLayout.from_dict(_ssd300_fields(**changes))
    with pytest.raises(ValueError, match="anchor layout"):
        AnchorLayout(
            image_size=int(changes.get("image_size", 300)),  # type: ignore[arg-type]
            feature_maps=tuple(changes.get("feature_maps", (38, 19, 10, 5, 3, 1))),  # type: ignore[arg-type]
            steps=tuple(changes.get("steps", (8, 16, 32, 64, 100, 300))),  # type: ignore[arg-type]
            sizes=tuple(changes.get("sizes", (21, 45, 99, 153, 207, 261, 315))),  # type: ignore[arg-type]
            aspect_ratios=tuple(tuple(r) for r in changes.get("aspect_ratios", [[2]] * 6)),  # type: ignore[union-attr]
        )


@pytest.mark.parametrize(
    "data",
    [
        {"image_size": 300},
        _ssd300_fields(extra=1),
        _ssd300_fields(feature_maps="abc"),
        _ssd300_fields(sizes=None),
    ],
)
def test_from_dict_rejects_malformed_content(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="anchor layout"):
        AnchorLayout.from_dict(data)


def test_unknown_layout_name_suggests_the_closest() -> None:
    with pytest.raises(ValueError, match="ssd300"):
        default_boxes("ssd30")


def test_layouts_are_data_without_torch() -> None:
    """``core/layouts.py`` defines the layouts without importing torch."""
    code = "import sys; from ssdcli.core.layouts import get_layout; get_layout('ssd300'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
