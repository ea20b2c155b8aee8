"""Batched matching and target encoding against the NumPy reference and torchvision's SSDMatcher + BoxCoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.detection._utils import BoxCoder, SSDMatcher
from torchvision.ops import box_convert, box_iou

from reference_numpy import encode_batch
from ssdcli import default_boxes, encode, match
from ssdcli.core import matching

ANCHORS = default_boxes("ssd300")  # [8732, 4] cxcywh
ANCHORS_XYXY = box_convert(ANCHORS, "cxcywh", "xyxy")  # converted by torchvision, not by ssdcli
TOL = dict(rtol=1e-5, atol=1e-5)


def random_boxes(generator: torch.Generator, count: int, min_size: float, max_size: float) -> torch.Tensor:
    """[count, 4] xyxy normalised boxes of side in [min_size, max_size], inside the unit square."""
    size = min_size + (max_size - min_size) * torch.rand(count, 2, generator=generator)
    corner = (1 - size) * torch.rand(count, 2, generator=generator)
    return torch.cat((corner, corner + size), dim=1)


def make_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of 7 images with the awkward cases: an empty image (all padding), one GT, GTs smaller than any
    default box, exact duplicates with different classes, padding in the middle, crowded overlapping GTs.

    Returns boxes [7, 8, 4] xyxy normalised and classes [7, 8] int64 (-1 = padding; padding boxes are junk).
    """
    g = torch.Generator().manual_seed(seed)
    batch, slots = 7, 8
    boxes = torch.rand(batch, slots, 4, generator=g) * 3 - 1  # junk, replaced for valid GTs
    classes = torch.full((batch, slots), -1, dtype=torch.int64)

    def put(image: int, slot_list: list[int], new_boxes: torch.Tensor) -> None:
        for slot, box in zip(slot_list, new_boxes):
            boxes[image, slot] = box
            classes[image, slot] = int(torch.randint(1, 21, (1,), generator=g))

    # image 0: empty
    put(1, [0], random_boxes(g, 1, 0.2, 0.6))  # one GT
    put(2, [0, 1, 2, 3], random_boxes(g, 4, 0.004, 0.03))  # smaller than the smallest default box (0.049)
    dup = random_boxes(g, 2, 0.1, 0.5)
    put(3, [0, 1, 2, 3], torch.cat((dup[:1], dup[:1], dup[1:], dup[1:])))  # exact duplicates
    put(4, [1, 4, 6], random_boxes(g, 3, 0.05, 0.7))  # padding before, between and after
    put(5, list(range(8)), random_boxes(g, 8, 0.02, 0.9))  # full
    crowd = random_boxes(g, 1, 0.2, 0.4).repeat(6, 1) + 0.01 * torch.randn(6, 4, generator=g)
    put(6, [0, 1, 2, 3, 4, 5], crowd.clamp(0, 1))  # heavily overlapping GTs
    return boxes, classes


SEEDS = [0, 1, 2, 3]


@pytest.mark.parametrize("seed", SEEDS)
def test_reference_rule_matches_numpy_reference(seed: int) -> None:
    boxes, classes = make_batch(seed)
    labels, offsets, scores = encode(boxes, classes, ANCHORS, best_anchor=False)
    ref = encode_batch(boxes.double().numpy(), classes.numpy(), ANCHORS.double().numpy(), best_anchor=False)
    np.testing.assert_array_equal(labels.numpy(), ref["labels"])
    np.testing.assert_allclose(offsets.numpy(), ref["offsets"], **TOL)
    np.testing.assert_allclose(scores.numpy(), ref["best_iou"], **TOL)
    # The reference keeps the score only where a default box was matched: the same values there.
    positive = ref["labels"] > 0
    np.testing.assert_allclose(scores.numpy()[positive], ref["ref_scores"][positive], **TOL)
    assert positive.any() and (~positive).any()


def float32_best_anchors(boxes: torch.Tensor) -> np.ndarray:
    """[B, G] index of each GT's highest-IoU default box by torchvision's float32 box_iou (first on ties)."""
    return np.stack([box_iou(image, ANCHORS_XYXY).argmax(dim=1).numpy() for image in boxes])


@pytest.mark.parametrize("seed", SEEDS)
def test_best_anchor_rule_matches_numpy_paper_variant(seed: int) -> None:
    """A GT inside several default boxes of equal area (e.g. the square and the 2:1 box of neighbouring cells)
    ties with all of them; float32 rounding picks one. The reference is told that pick and checks it is a tie."""
    boxes, classes = make_batch(seed)
    labels, offsets, scores = encode(boxes, classes, ANCHORS, best_anchor=True)
    ref = encode_batch(
        boxes.double().numpy(),
        classes.numpy(),
        ANCHORS.double().numpy(),
        best_anchor=True,
        tie_choices=float32_best_anchors(boxes),
    )
    np.testing.assert_array_equal(labels.numpy(), ref["labels"])
    np.testing.assert_allclose(offsets.numpy(), ref["offsets"], **TOL)
    np.testing.assert_allclose(scores.numpy(), ref["best_iou"], **TOL)
    np.testing.assert_array_equal(match(boxes, classes, ANCHORS).gt_index.numpy(), ref["gt_index"])


def torchvision_targets(boxes: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What torchvision's SSD computes in training for one image: labels [A], offsets [A, 4], best IoU [A]."""
    num_anchors = ANCHORS.shape[0]
    valid = classes >= 1
    gt_boxes, gt_classes = boxes[valid], classes[valid]
    labels = torch.zeros(num_anchors, dtype=torch.int64)
    offsets = torch.zeros(num_anchors, 4)
    if gt_boxes.numel() == 0:
        return labels, offsets, torch.zeros(num_anchors)
    quality = box_iou(gt_boxes, ANCHORS_XYXY)  # [G, A]
    assert not bool((quality == 0.5).any()), "exact 0.5 IoU: torchvision matches >=, ssdcli >; pick another seed"
    matched = SSDMatcher(0.5)(quality)  # [A]
    positive = matched >= 0
    labels[positive] = gt_classes[matched[positive]]
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    offsets[positive] = coder.encode_single(gt_boxes[matched[positive]], ANCHORS_XYXY[positive])
    return labels, offsets, quality.max(dim=0).values


@pytest.mark.parametrize("seed", SEEDS)
def test_best_anchor_rule_matches_torchvision(seed: int) -> None:
    boxes, classes = make_batch(seed)
    labels, offsets, scores = encode(boxes, classes, ANCHORS)
    for image in range(boxes.shape[0]):
        tv_labels, tv_offsets, tv_scores = torchvision_targets(boxes[image], classes[image])
        assert torch.equal(labels[image], tv_labels), f"image {image}"
        torch.testing.assert_close(offsets[image], tv_offsets, **TOL)
        torch.testing.assert_close(scores[image], tv_scores, **TOL)


def test_tiny_gts_get_positives_only_from_the_best_anchor_rule() -> None:
    """Sanity of the fixture: tiny GTs get positives only through the best-anchor rule."""
    boxes, classes = make_batch(0)
    with_rule = match(boxes, classes, ANCHORS).gt_index
    without = match(boxes, classes, ANCHORS, best_anchor=False).gt_index
    for slot in range(4):
        assert bool((with_rule[2] == slot).any())
        assert not bool((without[2] == slot).any())


def test_empty_batch_dimension_and_no_gt_columns() -> None:
    labels, offsets, scores = encode(torch.zeros(3, 0, 4), torch.zeros(3, 0, dtype=torch.int64), ANCHORS)
    assert labels.shape == (3, 8732) and not bool(labels.any())
    assert offsets.shape == (3, 8732, 4) and not bool(offsets.any())
    assert scores.shape == (3, 8732) and not bool(scores.any())


def test_all_padding_image_is_background() -> None:
    boxes = torch.tensor([[[0.1, 0.1, 0.5, 0.5], [float("nan"), 0.0, -1.0, 2.0]]])
    labels, offsets, scores = encode(boxes, torch.tensor([[-1, -1]]), ANCHORS)
    assert not bool(labels.any()) and not bool(offsets.any()) and not bool(scores.any())


def test_duplicates_threshold_ties_go_to_the_earlier_gt_and_best_anchor_to_the_later() -> None:
    box = torch.tensor([0.3, 0.3, 0.62, 0.58])
    boxes = box.repeat(1, 2, 1)  # [1, 2, 4]
    classes = torch.tensor([[3, 7]])
    best = int(box_iou(box[None], ANCHORS_XYXY)[0].argmax())
    over = box_iou(box[None], ANCHORS_XYXY)[0] > 0.5
    assert int(over.sum()) >= 2 and bool(over[best])
    reference_labels = encode(boxes, classes, ANCHORS, best_anchor=False).labels[0]
    assert set(reference_labels[over].tolist()) == {3} and not bool(reference_labels[~over].any())
    paper_labels = encode(boxes, classes, ANCHORS).labels[0]
    assert int(paper_labels[best]) == 7
    others = over.clone()
    others[best] = False
    assert set(paper_labels[others].tolist()) == {3}


def test_two_gts_with_the_same_best_anchor_the_later_keeps_it() -> None:
    boxes = torch.tensor([[[0.10, 0.10, 0.12, 0.12], [0.10, 0.10, 0.121, 0.121]]])
    quality = box_iou(boxes[0], ANCHORS_XYXY)
    best = quality.argmax(dim=1)
    assert int(best[0]) == int(best[1]) and float(quality.max()) < 0.5
    labels = encode(boxes, torch.tensor([[4, 9]]), ANCHORS).labels[0]
    assert labels.nonzero().flatten().tolist() == [int(best[1])]
    assert int(labels[best[1]]) == 9


def exact_half_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A GT whose IoU with the first default box is exactly 0.5 in binary floating point (all values dyadic):
    default box [0.25, 0.25, 0.75, 0.75] (area 1/4), GT [0.25, 0.25, 0.75, 0.5] (area 1/8, inside it)."""
    anchors = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.875, 0.875, 0.25, 0.25]])  # cxcywh; the second overlaps nothing
    boxes = torch.tensor([[[0.25, 0.25, 0.75, 0.5]]])
    return boxes, torch.tensor([[5]]), anchors


def test_exact_half_iou_is_not_a_match_strict_threshold() -> None:
    boxes, classes, anchors = exact_half_case()
    ref = encode_batch(boxes.double().numpy(), classes.numpy(), anchors.double().numpy(), best_anchor=False)
    assert ref["best_iou"][0, 0] == 0.5 and ref["labels"][0, 0] == 0
    labels, _, scores = encode(boxes, classes, anchors, best_anchor=False)
    assert float(scores[0, 0]) == 0.5
    np.testing.assert_array_equal(labels.numpy(), ref["labels"])
    # torchvision's Matcher takes IoU == threshold as a match; ssdcli follows the reference's strict >.
    assert int(SSDMatcher(0.5)(box_iou(boxes[0], box_convert(anchors, "cxcywh", "xyxy")))[0]) == 0
    # Just above the threshold, both match.
    assert int(encode(boxes, classes, anchors, threshold=0.4999, best_anchor=False).labels[0, 0]) == 5


def test_exact_half_iou_still_matched_by_the_best_anchor_rule() -> None:
    boxes, classes, anchors = exact_half_case()
    assert encode(boxes, classes, anchors).labels.tolist() == [[5, 0]]


def test_gt_overlapping_no_default_box_stays_unmatched() -> None:
    """Documented in ssdcli.core.matching: the best-anchor rule needs some overlap (torchvision would force it onto
    default box 0 with IoU 0)."""
    _, _, anchors = exact_half_case()
    boxes = torch.tensor([[[0.25, 0.25, 0.75, 0.75], [0.0, 0.9, 0.05, 1.0]]])  # the later GT overlaps nothing
    labels = encode(boxes, torch.tensor([[6, 4]]), anchors).labels
    assert labels.tolist() == [[6, 0]]


def test_reference_loop_only_updates_on_a_strictly_greater_score() -> None:
    """Two GTs with IoU > 0.5 on the same default box: the one with the higher IoU wins, whatever its position."""
    anchors = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    boxes = torch.tensor([[[0.25, 0.25, 0.75, 0.70], [0.25, 0.25, 0.75, 0.74]]])  # IoU 0.9 and 0.98
    for order, expected in (([0, 1], 2), ([1, 0], 2)):
        classes = torch.tensor([[1, 2]])[:, order]
        labels = encode(boxes[:, order], classes, anchors, best_anchor=False).labels
        assert labels.tolist() == [[expected]]


def test_offsets_by_hand() -> None:
    """DESIGN.md 1.3.4 on one default box: t = ((0.55-0.5)/0.5/0.1, (0.45-0.5)/0.5/0.1, log(0.6/0.5)/0.2, 0)."""
    anchors = torch.tensor([[0.5, 0.5, 0.5, 0.5]], dtype=torch.float64)
    boxes = torch.tensor([[[0.25, 0.2, 0.85, 0.7]]], dtype=torch.float64)
    _, offsets, _ = encode(boxes, torch.tensor([[1]]), anchors)
    expected = torch.tensor([[[1.0, -1.0, np.log(1.2) / 0.2, 0.0]]], dtype=torch.float64)
    torch.testing.assert_close(offsets, expected, rtol=0, atol=1e-12)


def test_threshold_only_reproduces_reference_on_ssd512_in_float64() -> None:
    anchors = default_boxes("ssd512", dtype=torch.float64)
    boxes, classes = make_batch(11)
    boxes = boxes.double()
    labels, offsets, _ = encode(boxes, classes, anchors, best_anchor=False)
    ref = encode_batch(boxes.numpy(), classes.numpy(), anchors.numpy(), best_anchor=False)
    np.testing.assert_array_equal(labels.numpy(), ref["labels"])
    np.testing.assert_allclose(offsets.numpy(), ref["offsets"], rtol=1e-10, atol=1e-10)


GOOD_BOXES = torch.tensor([[[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.8]]])
GOOD_CLASSES = torch.tensor([[1, 2]])


@pytest.mark.parametrize(
    ("boxes", "classes", "name", "kwargs"),
    [
        (torch.tensor([[[0.4, 0.1, 0.1, 0.4], [0.5, 0.5, 0.9, 0.8]]]), GOOD_CLASSES, "boxes", {}),
        (torch.tensor([[[0.1, 0.4, 0.4, 0.1], [0.5, 0.5, 0.9, 0.8]]]), GOOD_CLASSES, "boxes", {}),
        (torch.tensor([[[0.1, float("nan"), 0.4, 0.4], [0.5, 0.5, 0.9, 0.8]]]), GOOD_CLASSES, "boxes", {}),
        (torch.tensor([[[0.1, 0.1, float("inf"), 0.4], [0.5, 0.5, 0.9, 0.8]]]), GOOD_CLASSES, "boxes", {}),
        (GOOD_BOXES, torch.tensor([[0, 2]]), "classes", {}),
        (GOOD_BOXES, torch.tensor([[1, -2]]), "classes", {}),
        (GOOD_BOXES, torch.tensor([[1, 21]]), "classes", {"num_classes": 21}),
        (GOOD_BOXES, torch.tensor([[1, 2, 3]]), "classes", {}),
        (GOOD_BOXES, torch.tensor([1, 2]), "classes", {}),
        (GOOD_BOXES, torch.tensor([[1.0, 2.0]]), "classes", {}),
        (GOOD_BOXES[0], GOOD_CLASSES, "boxes", {}),
        (GOOD_BOXES[..., :3], GOOD_CLASSES, "boxes", {}),
        (GOOD_BOXES.long(), GOOD_CLASSES, "boxes", {}),
        (GOOD_BOXES.tolist(), GOOD_CLASSES, "boxes", {}),
        (GOOD_BOXES, GOOD_CLASSES, "threshold", {"threshold": 1.5}),
        (GOOD_BOXES, GOOD_CLASSES, "anchors", {"anchors": ANCHORS[:, :3]}),
        (GOOD_BOXES, GOOD_CLASSES, "anchors", {"anchors": torch.full((2, 4), float("nan"))}),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(
    boxes: torch.Tensor, classes: torch.Tensor, name: str, kwargs: dict[str, object]
) -> None:
    arguments = {"anchors": ANCHORS, **kwargs}
    with pytest.raises(ValueError, match=name):
        encode(boxes, classes, **arguments)  # type: ignore[arg-type]


def test_good_input_of_the_bad_input_table_is_accepted() -> None:
    labels, _, _ = encode(GOOD_BOXES, GOOD_CLASSES, ANCHORS, num_classes=3)
    assert set(labels.unique().tolist()) == {0, 1, 2}


def test_invalid_boxes_are_allowed_in_padding_rows() -> None:
    junk = torch.tensor([[[0.9, float("nan"), 0.1, 0.2]]])
    labels, _, _ = encode(torch.cat((GOOD_BOXES, junk), dim=1), torch.tensor([[1, 2, -1]]), ANCHORS)
    assert torch.equal(labels, encode(GOOD_BOXES, GOOD_CLASSES, ANCHORS).labels)


@pytest.mark.parametrize("chunk_entries", [1, 7 * 8 * 64 * 3, 7 * 8 * 64 * 5])
def test_small_chunks_of_default_boxes_match_the_references(
    monkeypatch: pytest.MonkeyPatch, chunk_entries: int
) -> None:
    """encode works through the default boxes in chunks (a whole number of 64-box blocks, the last one partial);
    with small chunks, every chunk and block boundary is crossed and the results still equal the references."""
    monkeypatch.setattr(matching, "_CHUNK_ENTRIES", chunk_entries)
    boxes, classes = make_batch(1)
    labels, offsets, scores = encode(boxes, classes, ANCHORS)
    for image in range(boxes.shape[0]):
        tv_labels, tv_offsets, tv_scores = torchvision_targets(boxes[image], classes[image])
        assert torch.equal(labels[image], tv_labels), f"image {image}"
        torch.testing.assert_close(offsets[image], tv_offsets, **TOL)
        torch.testing.assert_close(scores[image], tv_scores, **TOL)
    ref = encode_batch(boxes.double().numpy(), classes.numpy(), ANCHORS.double().numpy(), best_anchor=False)
    np.testing.assert_array_equal(encode(boxes, classes, ANCHORS, best_anchor=False).labels.numpy(), ref["labels"])


@pytest.mark.parametrize("seed", SEEDS)
def test_an_index_lookup_that_misses_falls_back_to_the_largest_iou(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Indices are looked up by recomputing the IoU of a few entries and finding the one equal to the chunk's
    maximum. Perturb the recomputation by one part in a million, so that no entry is ever equal: the fallback
    must still give the reference's assignment, never index 0 by default."""
    boxes, classes = make_batch(seed)
    expected = match(boxes, classes, ANCHORS).gt_index
    real = matching._entry_iou
    monkeypatch.setattr(matching, "_entry_iou", lambda *args: real(*args) * (1 + 1e-6))
    perturbed = match(boxes, classes, ANCHORS)
    assert torch.equal(perturbed.gt_index, expected)
    labels = encode(boxes, classes, ANCHORS).labels
    monkeypatch.undo()
    assert torch.equal(labels, encode(boxes, classes, ANCHORS).labels)


def test_a_layout_geometry_computed_once_gives_the_same_targets() -> None:
    boxes, classes = make_batch(1)
    geometry = matching.default_box_geometry(ANCHORS)
    for got, want in zip(encode(boxes, classes, geometry), encode(boxes, classes, ANCHORS)):
        assert torch.equal(got, want)
    wide = boxes.double()  # another dtype: the geometry is converted, not misused
    for got, want in zip(encode(wide, classes, geometry), encode(wide, classes, ANCHORS.double())):
        assert torch.equal(got, want)


def test_match_builds_the_full_iou_only_when_asked() -> None:
    boxes, classes = make_batch(2)
    assert match(boxes, classes, ANCHORS).iou is None
    iou = match(boxes, classes, ANCHORS, with_iou=True).iou
    expected = box_iou(boxes.reshape(-1, 4), ANCHORS_XYXY).reshape(*boxes.shape[:2], -1)
    valid = classes >= 1
    torch.testing.assert_close(iou[valid], expected[valid], **TOL)
    assert bool((iou[~valid] == -1).all())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("best_anchor", [True, False])
def test_unchecked_matching_gives_the_checked_targets(seed: int, best_anchor: bool) -> None:
    """The training loop's path (inputs checked where they entered, guard from the geometry) equals the checked
    one, whose results the references above test; junk padding boxes included."""
    boxes, classes = make_batch(seed)
    geometry = matching.default_box_geometry(ANCHORS)
    assert geometry.union_safe
    unchecked = encode(boxes, classes, geometry, best_anchor=best_anchor, checked=False)
    for got, want in zip(unchecked, encode(boxes, classes, ANCHORS, best_anchor=best_anchor)):
        assert torch.equal(got, want)
    got_match = match(boxes, classes, geometry, best_anchor=best_anchor, checked=False)
    want_match = match(boxes, classes, ANCHORS, best_anchor=best_anchor)
    assert torch.equal(got_match.gt_index, want_match.gt_index) and torch.equal(got_match.scores, want_match.scores)


def test_a_geometry_with_degenerate_default_boxes_is_not_union_safe() -> None:
    anchors = ANCHORS.clone()
    anchors[5, 2:] = 0.0  # a default box of zero area: its union with a GT of zero area is zero
    geometry = matching.default_box_geometry(anchors)
    assert not geometry.union_safe
    boxes, classes = torch.tensor([[[0.3, 0.3, 0.3, 0.3]]]), torch.tensor([[1]])
    for got, want in zip(encode(boxes, classes, geometry, checked=False), encode(boxes, classes, anchors)):
        assert torch.equal(got, want) and not got.isnan().any()
