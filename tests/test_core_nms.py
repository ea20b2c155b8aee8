"""Grouped NMS against torchvision.ops.batched_nms (torchvision's greedy kernel, one group at a time); both
implementations (``grouped_nms``, ``torchvision_grouped_nms``) on the same cases, and the one chosen per device."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import batched_nms, nms

from ssdcli.core.nms import NmsFunction, grouped_nms, nms_for_device, torchvision_grouped_nms

#: Both implementations, run on CPU tensors: each must pass every case against torchvision's per-group kernel.
IMPLEMENTATIONS = pytest.mark.parametrize(
    "grouped", [grouped_nms, torchvision_grouped_nms], ids=["grouped_nms", "torchvision_grouped_nms"]
)


def random_boxes(count: int, seed: int, spread: float = 1.0) -> torch.Tensor:
    """[count, 4] xyxy boxes in [0, 1], many overlapping when ``spread`` is small."""
    g = torch.Generator().manual_seed(seed)
    centre = 0.5 + spread * (torch.rand(count, 2, generator=g) - 0.5)
    size = 0.05 + 0.3 * torch.rand(count, 2, generator=g)
    return torch.cat((centre - size / 2, centre + size / 2), dim=1).clamp(0, 1)


def torchvision_kept(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou: float) -> set[int]:
    """Kept indices, one torchvision NMS call per group (no coordinate offsets, no rounding from them)."""
    kept: set[int] = set()
    for group in groups.unique():
        members = (groups == group).nonzero().flatten()
        kept.update(members[nms(boxes[members], scores[members], iou)].tolist())
    return kept


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("iou", [0.3, 0.45, 0.6, 0.7])
@IMPLEMENTATIONS
def test_random_groups_match_torchvision(seed: int, iou: float, grouped: NmsFunction) -> None:
    g = torch.Generator().manual_seed(100 + seed)
    count = 600
    boxes = random_boxes(count, seed, spread=0.3 + 0.2 * seed)
    scores = torch.rand(count, generator=g)
    groups = torch.randint(0, 1 + 7 * seed, (count,), generator=g)
    kept = grouped(boxes, scores, groups, iou)
    assert set(kept.tolist()) == torchvision_kept(boxes, scores, groups, iou)
    assert kept.numel() == len(set(kept.tolist()))


@IMPLEMENTATIONS
def test_long_suppression_chain(grouped: NmsFunction) -> None:
    """Each box overlaps its neighbours only: greedy NMS keeps every other box, which a single pass of
    'suppressed by any higher-scoring box' would get wrong."""
    count = 50
    x = torch.arange(count, dtype=torch.float32) * 0.01
    boxes = torch.stack((x, torch.zeros(count), x + 0.02, torch.ones(count)), dim=1)  # neighbours: IoU 1/3
    scores = torch.linspace(1.0, 0.5, count)
    groups = torch.zeros(count, dtype=torch.int64)
    kept = grouped(boxes, scores, groups, 0.3)
    expected = nms(boxes, scores, 0.3)
    assert kept.tolist() == expected.tolist()
    assert kept.tolist() == list(range(0, count, 2))


@IMPLEMENTATIONS
def test_order_is_by_group_then_score(grouped: NmsFunction) -> None:
    boxes = random_boxes(200, 7, spread=2.0)
    scores = torch.rand(200, generator=torch.Generator().manual_seed(7))
    groups = torch.randint(0, 5, (200,), generator=torch.Generator().manual_seed(8))
    kept = grouped(boxes, scores, groups, 0.5)
    kept_groups = groups[kept]
    assert torch.all(kept_groups[1:] >= kept_groups[:-1])
    for group in kept_groups.unique():
        group_scores = scores[kept[kept_groups == group]]
        assert torch.all(group_scores[1:] <= group_scores[:-1])
    assert set(kept.tolist()) == set(batched_nms(boxes.double(), scores.double(), groups, 0.5).tolist())


@IMPLEMENTATIONS
def test_iou_exactly_at_the_threshold_is_kept(grouped: NmsFunction) -> None:
    """IoU = 0.5 exactly: not more than the threshold, so both boxes survive, as in torchvision."""
    boxes = torch.tensor([[0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.25, 1.0]])  # inter 0.25, union 0.5
    scores = torch.tensor([0.9, 0.8])
    groups = torch.zeros(2, dtype=torch.int64)
    assert grouped(boxes, scores, groups, 0.5).tolist() == nms(boxes, scores, 0.5).tolist() == [0, 1]


@IMPLEMENTATIONS
def test_float64_boxes_and_empty_input(grouped: NmsFunction) -> None:
    boxes = random_boxes(300, 3, spread=0.4).double()
    scores = torch.rand(300, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    groups = torch.randint(0, 4, (300,), generator=torch.Generator().manual_seed(4))
    assert set(grouped(boxes, scores, groups, 0.45).tolist()) == torchvision_kept(boxes, scores, groups, 0.45)
    empty = grouped(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.45)
    assert empty.shape == (0,) and empty.dtype == torch.int64


@pytest.mark.parametrize("seed", range(4))
def test_both_implementations_give_the_same_indices_in_the_same_order(seed: int) -> None:
    """Scores rounded to tenths: many ties within a group, ranked the same way by both (the earlier first)."""
    g = torch.Generator().manual_seed(200 + seed)
    count = 500
    boxes = random_boxes(count, 10 + seed, spread=0.4)
    scores = (torch.rand(count, generator=g) * 10).round() / 10
    groups = torch.randint(0, 3 + 20 * seed, (count,), generator=g)
    ours = grouped_nms(boxes, scores, groups, 0.45)
    theirs = torchvision_grouped_nms(boxes, scores, groups, 0.45)
    assert ours.numel() > 0 and torch.equal(ours, theirs)


def test_group_offsets_do_not_move_a_decision() -> None:
    """900 groups: ``batched_nms`` moves the last group's boxes by 1,798, where float32 keeps 2^-13 of a
    coordinate, and the pair's IoU of 0.45004 rounds to below 0.45. Exact greedy NMS suppresses the second box;
    so must the torchvision path (its boxes go in as float64)."""
    groups_n = 900
    boxes = torch.cat([torch.tensor([[0.6, 0.6, 0.9, 0.9]]).repeat(groups_n, 1),
                       torch.tensor([[0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.22502, 1.0]])])  # fmt: skip
    groups = torch.cat([torch.arange(groups_n), torch.tensor([groups_n - 1, groups_n - 1])])
    scores = torch.cat([torch.full((groups_n,), 0.5), torch.tensor([0.9, 0.8])])
    assert batched_nms(boxes, scores, groups, 0.45).numel() == groups_n + 2  # float32 offsets: the pair both kept
    expected = torchvision_kept(boxes, scores, groups, 0.45)
    assert len(expected) == groups_n + 1
    assert set(torchvision_grouped_nms(boxes, scores, groups, 0.45).tolist()) == expected
    assert set(grouped_nms(boxes, scores, groups, 0.45).tolist()) == expected


def test_nms_is_chosen_by_device_type() -> None:
    assert nms_for_device("cpu") is grouped_nms
    assert nms_for_device("cuda") is torchvision_grouped_nms
    assert nms_for_device("mps") is grouped_nms


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA choice needs a CUDA device")
def test_cuda_uses_torchvision_and_matches_the_cpu() -> None:
    count = 3000  # 12,000 coordinates, under batched_nms's 100,000 on CUDA: one nms kernel for all groups
    g = torch.Generator().manual_seed(9)
    boxes = random_boxes(count, 9, spread=0.5)
    scores = torch.rand(count, generator=g)
    groups = torch.randint(0, 60, (count,), generator=g)
    assert nms_for_device("cuda") is torchvision_grouped_nms
    on_cuda = nms_for_device("cuda")(boxes.cuda(), scores.cuda(), groups.cuda(), 0.45)
    assert on_cuda.device.type == "cuda"
    assert torch.equal(on_cuda.cpu(), grouped_nms(boxes, scores, groups, 0.45))
