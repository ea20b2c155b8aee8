"""Properties of matching, encoding and postprocessing that must hold for any input (hypothesis)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import box_convert, box_iou

from ssdcli import decode, default_boxes, encode, match, postprocess
from ssdcli.core.postprocess import PostprocessSettings

ANCHORS = default_boxes("ssd300")  # [8732, 4] cxcywh
ANCHORS_XYXY = box_convert(ANCHORS, "cxcywh", "xyxy")
SETTINGS = settings(max_examples=40, deadline=None)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Hundreds of small calls: one intra-op thread avoids OpenMP oversubscription on a busy shared CPU (it made
    these tests 20x slower there); restored afterwards for the other test modules."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

coordinate = st.floats(0.0, 0.95)
side = st.floats(0.005, 1.0)


@st.composite
def gt_box(draw: st.DrawFn) -> list[float]:
    """One xyxy normalised box inside the unit square, at least 0.005 on each side."""
    x1, y1, w, h = draw(coordinate), draw(coordinate), draw(side), draw(side)
    return [x1, y1, min(x1 + w, 1.0), min(y1 + h, 1.0)]


@st.composite
def gt_batch(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """boxes [B, G, 4] xyxy normalised and classes [B, G] (1..20, -1 = padding with a junk box)."""
    batch = draw(st.integers(1, 3))
    slots = draw(st.integers(0, 5))
    boxes, classes = [], []
    for _ in range(batch):
        image_boxes, image_classes = [], []
        for _ in range(slots):
            if draw(st.integers(0, 4)) == 0:
                image_boxes.append([0.9, 0.9, 0.1, 0.1])
                image_classes.append(-1)
            else:
                image_boxes.append(draw(gt_box()))
                image_classes.append(draw(st.integers(1, 20)))
        boxes.append(image_boxes)
        classes.append(image_classes)
    return (
        torch.tensor(boxes, dtype=torch.float32).reshape(batch, slots, 4),
        torch.tensor(classes, dtype=torch.int64).reshape(batch, slots),
    )


@SETTINGS
@given(gt_batch(), st.booleans())
def test_decode_of_encode_recovers_the_matched_gt(batch: tuple[torch.Tensor, torch.Tensor], best_anchor: bool) -> None:
    boxes, classes = batch
    labels, offsets, _ = encode(boxes, classes, ANCHORS, best_anchor=best_anchor)
    if boxes.shape[1] == 0:
        assert not bool(labels.any()) and not bool(offsets.any())
        return
    gt_index = match(boxes, classes, ANCHORS, best_anchor=best_anchor).gt_index
    positive = labels > 0
    assert torch.equal(positive, gt_index >= 0)
    image = torch.arange(boxes.shape[0])[:, None].expand_as(gt_index)
    matched = gt_index.clamp(min=0)
    assert torch.equal(labels[positive], classes[image, matched][positive])
    recovered = decode(offsets, ANCHORS)[positive]
    torch.testing.assert_close(recovered, boxes[image, matched][positive], rtol=0, atol=1e-5)


@SETTINGS
@given(gt_batch())
def test_every_gt_gets_a_positive_unless_a_later_gt_takes_its_best_box(
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    boxes, classes = batch
    gt_index = match(boxes, classes, ANCHORS, best_anchor=True).gt_index
    for image in range(boxes.shape[0]):
        valid = [j for j in range(boxes.shape[1]) if classes[image, j] >= 1]
        if not valid:
            assert not bool((gt_index[image] >= 0).any())
            continue
        best = box_iou(boxes[image], ANCHORS_XYXY).argmax(dim=1)  # [G], torchvision, first on ties
        for j in valid:
            taken_later = any(int(best[k]) == int(best[j]) for k in valid if k > j)
            if taken_later:
                continue
            assert bool((gt_index[image] == j).any()), f"GT {j} of image {image} has no positive"
            assert int(gt_index[image, best[j]]) == j


@SETTINGS
@given(gt_batch())
def test_threshold_rule_is_score_above_half_and_best_anchor_only_adds(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    boxes, classes = batch
    reference = encode(boxes, classes, ANCHORS, best_anchor=False)
    paper = encode(boxes, classes, ANCHORS, best_anchor=True)
    assert torch.equal(reference.labels > 0, reference.scores > 0.5)
    assert torch.equal(reference.scores, paper.scores)
    assert bool(((reference.labels > 0) <= (paper.labels > 0)).all())
    assert bool((paper.scores >= 0).all()) and bool((paper.scores <= 1).all())


junk_box = st.sampled_from(
    [
        [0.0, 0.0, 0.0, 0.0],
        [0.9, 0.9, 0.1, 0.1],
        [float("nan")] * 4,
        [-5.0, float("inf"), 3.0, -1.0],
        [0.2, 0.2, 0.6, 0.6],
    ]
)


@SETTINGS
@given(gt_batch(), st.data())
def test_padding_rows_never_change_the_result(batch: tuple[torch.Tensor, torch.Tensor], data: st.DataObject) -> None:
    boxes, classes = batch
    count = data.draw(st.integers(1, 3))
    padded_boxes, padded_classes = boxes, classes
    for _ in range(count):
        position = data.draw(st.integers(0, padded_boxes.shape[1]))
        junk = torch.tensor(data.draw(junk_box)).expand(boxes.shape[0], 1, 4)
        padded_boxes = torch.cat((padded_boxes[:, :position], junk, padded_boxes[:, position:]), dim=1)
        padding = torch.full((boxes.shape[0], 1), -1, dtype=torch.int64)
        padded_classes = torch.cat((padded_classes[:, :position], padding, padded_classes[:, position:]), dim=1)
    for best_anchor in (True, False):
        plain = encode(boxes, classes, ANCHORS, best_anchor=best_anchor)
        padded = encode(padded_boxes, padded_classes, ANCHORS, best_anchor=best_anchor)
        for name, a, b in zip(plain._fields, plain, padded):
            assert torch.equal(a, b), name


@SETTINGS
@given(gt_batch(), st.randoms(use_true_random=False))
def test_permuting_images_permutes_the_result(batch: tuple[torch.Tensor, torch.Tensor], rng: object) -> None:
    boxes, classes = batch
    order = list(range(boxes.shape[0]))
    rng.shuffle(order)  # type: ignore[attr-defined]
    permutation = torch.tensor(order)
    whole = encode(boxes, classes, ANCHORS)
    permuted = encode(boxes[permutation], classes[permutation], ANCHORS)
    for name, a, b in zip(whole._fields, whole, permuted):
        assert torch.equal(a[permutation], b), name


SMALL_ANCHORS = default_boxes("ssd300")[-200:]  # the coarse layers: enough overlap for NMS to matter


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.floats(0.01, 0.5))
def test_postprocess_treats_every_image_on_its_own(seed: int, batch: int, score_threshold: float) -> None:
    g = torch.Generator().manual_seed(seed)
    conf = torch.randn(batch, 200, 5, generator=g) * 2
    loc = torch.randn(batch, 200, 4, generator=g)
    settings = PostprocessSettings(score_threshold, 0.45, top_k=30, pre_nms_top_k=40)
    together = postprocess(conf, loc, SMALL_ANCHORS, settings)
    for image in range(batch):
        alone = postprocess(conf[image : image + 1], loc[image : image + 1], SMALL_ANCHORS, settings)[0]
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(together[image][key], alone[key]), key
