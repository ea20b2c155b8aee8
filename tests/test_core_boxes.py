"""Box format conversions against torchvision's ``box_convert``, on tensors and numpy arrays alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import box_convert

from ssdcli.core.boxes import cxcywh_to_xyxy, xywh_to_xyxy, xyxy_to_cxcywh, xyxy_to_xywh

CONVERSIONS = [
    (xywh_to_xyxy, "xywh", "xyxy"),
    (xyxy_to_xywh, "xyxy", "xywh"),
    (cxcywh_to_xyxy, "cxcywh", "xyxy"),
    (xyxy_to_cxcywh, "xyxy", "cxcywh"),
]


def _boxes() -> torch.Tensor:
    """[3, 5, 4] valid boxes in every format (positive sizes), float64."""
    generator = torch.Generator().manual_seed(0)
    corner = torch.rand(3, 5, 2, generator=generator, dtype=torch.float64) * 100
    size = torch.rand(3, 5, 2, generator=generator, dtype=torch.float64) * 50 + 1
    return torch.cat((corner, corner + size), dim=-1)


@pytest.mark.parametrize(("convert", "source", "target"), CONVERSIONS)
def test_conversion_equals_torchvision(convert, source: str, target: str) -> None:
    boxes = box_convert(_boxes().reshape(-1, 4), "xyxy", source)  # [15, 4] in the source format
    expected = box_convert(boxes, source, target)
    torch.testing.assert_close(convert(boxes), expected, rtol=0, atol=1e-12)
    as_numpy = convert(boxes.numpy())
    assert isinstance(as_numpy, np.ndarray)
    np.testing.assert_allclose(as_numpy, expected.numpy(), rtol=0, atol=1e-12)
    batched = convert(boxes.reshape(3, 5, 4))  # any leading shape
    torch.testing.assert_close(batched.reshape(-1, 4), expected, rtol=0, atol=1e-12)
