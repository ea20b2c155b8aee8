"""SSD loss against the NumPy reference (both variants) and torchvision's SSD.compute_loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.models.detection import ssd300_vgg16
from torchvision.models.detection._utils import BoxCoder, SSDMatcher
from torchvision.ops import box_convert, box_iou

from reference_numpy import ssd_losses
from ssdcli import SSDLoss, default_boxes, encode, ssd_loss
from ssdcli.core.loss import mine_hard_negatives

ANCHORS = default_boxes("ssd300")  # [8732, 4] cxcywh
ANCHORS_XYXY = box_convert(ANCHORS, "cxcywh", "xyxy")
NUM_CLASSES = 21
TOL = dict(rtol=1e-5, atol=1e-5)
CODER = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))


@pytest.fixture(scope="module")
def torchvision_ssd() -> torch.nn.Module:
    return ssd300_vgg16(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)


def random_targets(
    seed: int, batch: int, positives_per_image: list[int], num_anchors: int = 8732
) -> tuple[torch.Tensor, torch.Tensor]:
    """labels [B, A] with the given number of positives per image at random default boxes, offsets [B, A, 4]."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(batch, num_anchors, dtype=torch.int64)
    offsets = torch.zeros(batch, num_anchors, 4)
    for image, count in enumerate(positives_per_image):
        where = torch.randperm(num_anchors, generator=g)[:count]
        labels[image, where] = torch.randint(1, NUM_CLASSES, (count,), generator=g)
        offsets[image, where] = torch.randn(count, 4, generator=g) * 2
    return labels, offsets


def random_predictions(seed: int, batch: int, num_anchors: int = 8732) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    conf = torch.randn(batch, num_anchors, NUM_CLASSES, generator=g) * 2
    loc = torch.randn(batch, num_anchors, 4, generator=g) * 2  # large enough to use both smooth-L1 branches
    return conf, loc


CASES = {
    "mixed": [40, 0, 7, 120],  # one image without positives
    "none": [0, 0, 0],
    "single": [1],
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize(
    ("mining", "normalize"), [("batch", "batch"), ("image", "positives"), ("image", "batch"), ("batch", "positives")]
)
def test_matches_numpy_reference(case: str, mining: str, normalize: str) -> None:
    counts = CASES[case]
    labels, offsets = random_targets(1, len(counts), counts)
    conf, loc = random_predictions(2, len(counts))
    ours = ssd_loss(conf, loc, labels, offsets, mining=mining, normalize=normalize)  # type: ignore[arg-type]
    ref_conf, ref_loc = ssd_losses(
        conf.numpy(), loc.numpy(), labels.numpy(), offsets.numpy(), mining=mining, normalize=normalize
    )
    np.testing.assert_allclose(float(ours.conf), ref_conf, **TOL)
    np.testing.assert_allclose(float(ours.loc), ref_loc, **TOL)
    np.testing.assert_allclose(float(ours.total), ref_conf + ref_loc, **TOL)


def test_negatives_capped_by_those_available() -> None:
    """Ten default boxes, four positives: 3 * 4 (+ B) exceeds the six negatives, so all six are used."""
    labels, offsets = random_targets(3, 2, [4, 4], num_anchors=10)
    conf, loc = random_predictions(4, 2, num_anchors=10)
    for mining in ("batch", "image"):
        ours = ssd_loss(conf, loc, labels, offsets, mining=mining)  # type: ignore[arg-type]
        ref_conf, _ = ssd_losses(
            conf.numpy(), loc.numpy(), labels.numpy(), offsets.numpy(), mining=mining, normalize="positives"
        )
        np.testing.assert_allclose(float(ours.conf), ref_conf, **TOL)
        all_anchors = torch.nn.functional.cross_entropy(
            conf.reshape(-1, NUM_CLASSES), labels.reshape(-1), reduction="sum"
        )
        np.testing.assert_allclose(float(ours.conf), float(all_anchors) / 8, **TOL)


def test_float64_matches_reference_tightly() -> None:
    labels, offsets = random_targets(5, 2, [30, 3])
    conf, loc = random_predictions(6, 2)
    ours = ssd_loss(conf.double(), loc.double(), labels, offsets.double(), mining="batch", normalize="batch")
    ref_conf, ref_loc = ssd_losses(conf.numpy(), loc.numpy(), labels.numpy(), offsets.numpy())
    assert ours.conf.dtype == torch.float64
    np.testing.assert_allclose([float(ours.conf), float(ours.loc)], [ref_conf, ref_loc], rtol=1e-10)


def test_equal_losses_keep_exactly_k_in_anchor_order() -> None:
    """Uniform logits give every negative the same loss log(C). The reference's strict ``<`` would keep none of
    them; ssdcli keeps exactly k (DESIGN.md 1.4), the first ones in (image, default box) order."""
    labels = torch.zeros(2, 50, dtype=torch.int64)
    labels[0, [3, 10]] = 1
    labels[1, 20] = 2
    conf = torch.zeros(2, 50, NUM_CLASSES)
    loc = offsets = torch.zeros(2, 50, 4)
    per_anchor = math.log(NUM_CLASSES)

    batch = ssd_loss(conf, loc, labels, offsets, mining="batch", normalize="batch")
    k = 3 * 3 + 2
    assert math.isclose(float(batch.conf), (3 + k) * per_anchor / 2, rel_tol=1e-6)
    kept = mine_hard_negatives(torch.full((2, 50), per_anchor), labels > 0, 3, "batch")
    expected = torch.zeros(2, 50, dtype=torch.bool)
    expected[0, [i for i in range(50) if i not in (3, 10)][:k]] = True
    assert torch.equal(kept, expected)

    image = ssd_loss(conf, loc, labels, offsets, mining="image", normalize="positives")
    assert math.isclose(float(image.conf), (3 + 6 + 3) * per_anchor / 3, rel_tol=1e-6)
    kept = mine_hard_negatives(torch.full((2, 50), per_anchor), labels > 0, 3, "image")
    expected = torch.zeros(2, 50, dtype=torch.bool)
    expected[0, [i for i in range(50) if i not in (3, 10)][:6]] = True
    expected[1, list(range(3))] = True
    assert torch.equal(kept, expected)


def test_hardest_negatives_are_the_lowest_background_probability() -> None:
    conf = torch.zeros(1, 6, 3)
    conf[0, :, 0] = torch.tensor([5.0, -1.0, 0.0, -3.0, 2.0, 9.0])  # background logit; 5 is a positive
    labels = torch.tensor([[0, 0, 0, 0, 0, 1]])
    kept = mine_hard_negatives(
        torch.nn.functional.cross_entropy(conf[0], torch.zeros(6, dtype=torch.int64), reduction="none")[None],
        labels > 0,
        3,
        "image",
    )
    assert kept.tolist() == [[False, True, True, True, False, False]]


def test_all_background_batch() -> None:
    conf, loc = random_predictions(7, 2)
    labels = torch.zeros(2, 8732, dtype=torch.int64)
    offsets = torch.zeros(2, 8732, 4)
    image = ssd_loss(conf, loc, labels, offsets)
    assert float(image.conf) == 0.0 and float(image.loc) == 0.0
    batch = ssd_loss(conf, loc, labels, offsets, mining="batch", normalize="batch")
    ref_conf, ref_loc = ssd_losses(conf.numpy(), loc.numpy(), labels.numpy(), offsets.numpy())
    assert ref_conf > 0 and ref_loc == 0
    np.testing.assert_allclose([float(batch.conf), float(batch.loc)], [ref_conf, 0.0], **TOL)


def test_alpha_and_neg_ratio() -> None:
    labels, offsets = random_targets(8, 2, [12, 5])
    conf, loc = random_predictions(9, 2)
    ours = ssd_loss(conf, loc, labels, offsets, neg_ratio=1.5, alpha=0.25)
    ref_conf, ref_loc = ssd_losses(
        conf.numpy(), loc.numpy(), labels.numpy(), offsets.numpy(), 1.5, 0.25, mining="image", normalize="positives"
    )
    np.testing.assert_allclose([float(ours.conf), float(ours.loc)], [ref_conf, ref_loc], **TOL)


def torchvision_inputs(
    seed: int, gts_per_image: list[int]
) -> tuple[list[dict[str, torch.Tensor]], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Random GTs per image (xyxy normalised), matched by torchvision's SSDMatcher; returns targets, matched_idxs,
    and the same targets as ssdcli's labels [B, A] and offsets [B, A, 4] built with torchvision's BoxCoder."""
    g = torch.Generator().manual_seed(seed)
    targets, matched_idxs = [], []
    batch, num_anchors = len(gts_per_image), ANCHORS.shape[0]
    labels = torch.zeros(batch, num_anchors, dtype=torch.int64)
    offsets = torch.zeros(batch, num_anchors, 4)
    for image, count in enumerate(gts_per_image):
        size = 0.02 + 0.6 * torch.rand(count, 2, generator=g)
        corner = (1 - size) * torch.rand(count, 2, generator=g)
        boxes = torch.cat((corner, corner + size), dim=1)
        classes = torch.randint(1, NUM_CLASSES, (count,), generator=g)
        targets.append({"boxes": boxes, "labels": classes})
        if count == 0:
            matched = torch.full((num_anchors,), -1, dtype=torch.int64)
        else:
            matched = SSDMatcher(0.5)(box_iou(boxes, ANCHORS_XYXY))
        matched_idxs.append(matched)
        positive = matched >= 0
        labels[image, positive] = classes[matched[positive]]
        offsets[image, positive] = CODER.encode_single(boxes[matched[positive]], ANCHORS_XYXY[positive])
    return targets, matched_idxs, labels, offsets


@pytest.mark.parametrize(("seed", "gts"), [(10, [3, 0, 12, 1]), (11, [0, 0]), (12, [25])])
def test_matches_torchvision_compute_loss(torchvision_ssd: torch.nn.Module, seed: int, gts: list[int]) -> None:
    targets, matched_idxs, labels, offsets = torchvision_inputs(seed, gts)
    conf, loc = random_predictions(seed + 100, len(gts))
    conf_tv, loc_tv = conf.clone().requires_grad_(), loc.clone().requires_grad_()
    expected = torchvision_ssd.compute_loss(
        targets, {"cls_logits": conf_tv, "bbox_regression": loc_tv}, [ANCHORS_XYXY] * len(gts), matched_idxs
    )
    conf_ours, loc_ours = conf.clone().requires_grad_(), loc.clone().requires_grad_()
    ours = ssd_loss(conf_ours, loc_ours, labels, offsets, mining="image", normalize="positives")
    torch.testing.assert_close(ours.conf, expected["classification"], **TOL)
    torch.testing.assert_close(ours.loc, expected["bbox_regression"], **TOL)
    # Same gradients: the mined negatives are the same default boxes.
    sum(expected.values()).backward()
    ours.total.backward()
    torch.testing.assert_close(conf_ours.grad, conf_tv.grad, **TOL)
    torch.testing.assert_close(loc_ours.grad, loc_tv.grad, **TOL)


def test_encode_then_loss_matches_torchvision_end_to_end(torchvision_ssd: torch.nn.Module) -> None:
    targets, matched_idxs, _, _ = torchvision_inputs(13, [4, 9, 0])
    gmax = max(len(t["labels"]) for t in targets)
    boxes = torch.zeros(3, gmax, 4)
    classes = torch.full((3, gmax), -1, dtype=torch.int64)
    for image, target in enumerate(targets):
        boxes[image, : len(target["labels"])] = target["boxes"]
        classes[image, : len(target["labels"])] = target["labels"]
    labels, offsets, _ = encode(boxes, classes, ANCHORS)
    conf, loc = random_predictions(14, 3)
    expected = torchvision_ssd.compute_loss(
        targets, {"cls_logits": conf, "bbox_regression": loc}, [ANCHORS_XYXY] * 3, matched_idxs
    )
    ours = ssd_loss(conf, loc, labels, offsets)
    torch.testing.assert_close(ours.conf, expected["classification"], **TOL)
    torch.testing.assert_close(ours.loc, expected["bbox_regression"], **TOL)


def test_result_is_a_named_pair() -> None:
    labels, offsets = random_targets(15, 1, [5])
    conf, loc = random_predictions(16, 1)
    result = ssd_loss(conf, loc, labels, offsets)
    assert isinstance(result, SSDLoss)
    assert result.conf.dim() == 0 and result.loc.dim() == 0
    assert torch.equal(result.total, result.conf + result.loc)


GOOD = dict(
    conf=torch.zeros(2, 5, 3),
    loc=torch.zeros(2, 5, 4),
    labels=torch.zeros(2, 5, dtype=torch.int64),
    offsets=torch.zeros(2, 5, 4),
)


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("conf", {"conf": torch.zeros(2, 5)}),
        ("loc", {"loc": torch.zeros(2, 6, 4)}),
        ("loc", {"loc": torch.zeros(2, 5, 3)}),
        ("offsets", {"offsets": torch.zeros(1, 5, 4)}),
        ("labels", {"labels": torch.zeros(2, 4, dtype=torch.int64)}),
        ("labels", {"labels": torch.zeros(2, 5)}),
        ("labels", {"labels": torch.full((2, 5), 3)}),
        ("labels", {"labels": torch.full((2, 5), -1)}),
        ("neg_ratio", {"neg_ratio": -1}),
        ("mining", {"mining": "images"}),
        ("normalize", {"normalize": "positive"}),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(name: str, changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=name):
        ssd_loss(**{**GOOD, **changes})  # type: ignore[arg-type]


def test_good_input_of_the_bad_input_table_is_accepted() -> None:
    assert float(ssd_loss(**GOOD).total) == 0.0  # type: ignore[arg-type]


@pytest.mark.parametrize("mining", ["image", "batch"])
def test_mining_equals_a_stable_sort_on_tied_losses(mining: str) -> None:
    """Losses drawn from a few values (many ties), positives at random: the kept negatives are the first k of a
    stable descending sort (numpy's), per image or over the batch."""
    rng = np.random.default_rng(7)
    for trial in range(20):
        batch, anchors = int(rng.integers(1, 5)), int(rng.integers(5, 300))
        losses = rng.integers(0, 4, size=(batch, anchors)).astype(np.float32) / 4
        positive = rng.random((batch, anchors)) < rng.choice([0.0, 0.02, 0.2, 0.6])
        kept = mine_hard_negatives(torch.from_numpy(losses), torch.from_numpy(positive), 3, mining).numpy()
        expected = np.zeros_like(positive)
        rows = [(slice(i, i + 1), 3 * int(positive[i].sum())) for i in range(batch)]
        if mining == "batch":
            rows = [(slice(0, batch), 3 * int(positive.sum()) + batch)]
        for where, k in rows:
            hardness = np.where(positive[where], -np.inf, losses[where]).ravel()
            order = np.argsort(-hardness, kind="stable")[:k]
            flat = np.zeros(hardness.size, dtype=bool)
            flat[order] = True
            expected[where] = flat.reshape(expected[where].shape) & ~positive[where]
        assert np.array_equal(kept, expected), f"trial {trial}"


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("mining", ["image", "batch"])
def test_unchecked_loss_equals_the_checked_loss(case: str, mining: str) -> None:
    labels, offsets = random_targets(3, len(CASES[case]), CASES[case])
    conf, loc = random_predictions(4, len(CASES[case]))
    checked = ssd_loss(conf, loc, labels, offsets, mining=mining)  # type: ignore[arg-type]
    unchecked = ssd_loss(conf, loc, labels, offsets, mining=mining, checked=False)  # type: ignore[arg-type]
    assert torch.equal(checked.conf, unchecked.conf) and torch.equal(checked.loc, unchecked.loc)
