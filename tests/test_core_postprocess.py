"""Decoding and batched NMS against torchvision's BoxCoder and SSD.postprocess_detections."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import ssd300_vgg16
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import box_convert, box_iou

from ssdcli import decode, default_boxes, postprocess
from ssdcli.core.postprocess import PostprocessSettings

ANCHORS = default_boxes("ssd300")  # [8732, 4] cxcywh
ANCHORS_XYXY = box_convert(ANCHORS, "cxcywh", "xyxy")
SIZE = 300
NUM_CLASSES = 21
TOL = dict(rtol=1e-5, atol=1e-5)
CODER = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))


@pytest.fixture(scope="module")
def torchvision_ssd() -> torch.nn.Module:
    return ssd300_vgg16(weights=None, weights_backbone=None, num_classes=NUM_CLASSES).eval()


def dense_outputs(seed: int, batch: int, num_classes: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """N(0, 1) logits: nearly every class of every default box scores above 0.01. Offsets large enough for many
    decoded boxes to leave the image (clipping) and a few to hit the log-scale clamp. Few classes, so that the
    2000 candidates of an image hold no float32 score ties."""
    g = torch.Generator().manual_seed(seed)
    conf = torch.randn(batch, ANCHORS.shape[0], num_classes, generator=g)
    loc = torch.randn(batch, ANCHORS.shape[0], 4, generator=g) * 1.5
    loc[:, :20, 2:] = 30.0
    return conf, loc


def trained_like_outputs(seed: int, batch: int, confident: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Background logit high for most default boxes, ``confident`` confident ones per image (few enough that
    fewer than 200 detections survive)."""
    g = torch.Generator().manual_seed(seed)
    conf = torch.randn(batch, ANCHORS.shape[0], NUM_CLASSES, generator=g)
    conf[..., 0] += 10.0
    for image in range(batch):
        where = torch.randperm(ANCHORS.shape[0], generator=g)[:confident]
        classes = torch.randint(1, 4, (confident,), generator=g)  # few classes: NMS has work to do
        conf[image, where, classes] += 8.0 + 4.0 * torch.rand(confident, generator=g)
    loc = torch.randn(batch, ANCHORS.shape[0], 4, generator=g) * 0.5
    return conf, loc


def assert_no_relevant_ties(
    conf: torch.Tensor,
    expected: list[dict[str, torch.Tensor]],
    score_threshold: float = 0.01,
    pre_nms_top_k: int = 400,
    top_k: int = 200,
) -> None:
    """Guard on the inputs: which detections survive is only defined without ties among the candidates of a class
    (scores above the threshold, top pre_nms_top_k and the first one left out), and without a tie at the top_k
    cut of an image (the last detection kept has a score no other candidate of the image has)."""
    scores = torch.softmax(conf, dim=-1)[..., 1:]  # [B, A, C-1]
    for image, detections in zip(scores, expected):
        candidates = []
        for column in image.T:
            above = column[column > score_threshold].sort(descending=True).values[: pre_nms_top_k + 1]
            assert above.unique().numel() == above.numel(), "score ties in a class; pick another seed"
            candidates.append(above)
        if len(detections["scores"]) == top_k:
            last = detections["scores"][-1]
            assert int((torch.cat(candidates) == last).sum()) == 1, "score tie at the top_k cut; pick another seed"


def torchvision_detections(
    model: torch.nn.Module, conf: torch.Tensor, loc: torch.Tensor
) -> list[dict[str, torch.Tensor]]:
    """torchvision's postprocessing with anchors in pixel xyxy, boxes mapped back to normalised."""
    anchors_pixels = ANCHORS_XYXY * SIZE
    with torch.no_grad():
        batch = conf.shape[0]
        out = model.postprocess_detections(
            {"cls_logits": conf, "bbox_regression": loc}, [anchors_pixels] * batch, [(SIZE, SIZE)] * batch
        )
    return [{**d, "boxes": d["boxes"] / SIZE} for d in out]


def canonical(detections: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Order detections by label, then decreasing score, so sets can be compared element-wise."""
    labels, scores = detections["labels"].tolist(), detections["scores"].tolist()
    order = sorted(range(len(scores)), key=lambda i: (labels[i], -scores[i]))
    index = torch.tensor(order, dtype=torch.int64)
    return {key: value[index] for key, value in detections.items()}


def assert_same_detections(ours: list[dict[str, torch.Tensor]], expected: list[dict[str, torch.Tensor]]) -> None:
    assert len(ours) == len(expected)
    for image, (mine, theirs) in enumerate(zip(ours, expected)):
        assert mine["labels"].shape == theirs["labels"].shape, f"image {image}"
        mine, theirs = canonical(mine), canonical(theirs)
        assert torch.equal(mine["labels"], theirs["labels"]), f"image {image}"
        torch.testing.assert_close(mine["scores"], theirs["scores"], **TOL)
        torch.testing.assert_close(mine["boxes"], theirs["boxes"], **TOL)


@pytest.mark.parametrize("seed", [0, 1])
def test_dense_matches_torchvision(torchvision_ssd: torch.nn.Module, seed: int) -> None:
    conf, loc = dense_outputs(seed, 2)
    ours = postprocess(conf, loc, ANCHORS)
    expected = torchvision_detections(torchvision_ssd, conf, loc)
    assert_no_relevant_ties(conf, expected)
    assert all(len(d["scores"]) == 200 for d in expected)  # the top-200 cut is exercised
    assert_same_detections(ours, expected)


@pytest.mark.parametrize("seed", [2, 3])
def test_trained_like_matches_torchvision(torchvision_ssd: torch.nn.Module, seed: int) -> None:
    conf, loc = trained_like_outputs(seed, 3)
    ours = postprocess(conf, loc, ANCHORS)
    expected = torchvision_detections(torchvision_ssd, conf, loc)
    assert_no_relevant_ties(conf, expected)
    assert all(0 < len(d["scores"]) < 200 for d in expected)
    assert_same_detections(ours, expected)


@pytest.mark.parametrize(
    ("score_threshold", "iou_threshold", "top_k", "pre_nms_top_k"), [(0.3, 0.45, 200, 400), (0.02, 0.6, 50, 30)]
)
def test_other_settings_match_torchvision(
    torchvision_ssd: torch.nn.Module, score_threshold: float, iou_threshold: float, top_k: int, pre_nms_top_k: int
) -> None:
    conf, loc = trained_like_outputs(4, 2, confident=500)
    model = torchvision_ssd
    saved = (model.score_thresh, model.nms_thresh, model.detections_per_img, model.topk_candidates)
    try:
        model.score_thresh, model.nms_thresh = score_threshold, iou_threshold
        model.detections_per_img, model.topk_candidates = top_k, pre_nms_top_k
        expected = torchvision_detections(model, conf, loc)
    finally:
        model.score_thresh, model.nms_thresh, model.detections_per_img, model.topk_candidates = saved
    assert_no_relevant_ties(conf, expected, score_threshold, pre_nms_top_k, top_k)
    ours = postprocess(conf, loc, ANCHORS, PostprocessSettings(score_threshold, iou_threshold, top_k, pre_nms_top_k))
    assert_same_detections(ours, expected)


def test_output_contract() -> None:
    conf, loc = trained_like_outputs(5, 2)
    for detections in postprocess(conf, loc, ANCHORS):
        scores, boxes, labels = detections["scores"], detections["boxes"], detections["labels"]
        assert labels.dtype == torch.int64 and bool((labels >= 1).all()) and bool((labels < NUM_CLASSES).all())
        assert bool((scores[:-1] >= scores[1:]).all()), "sorted by decreasing score"
        assert bool((boxes >= 0).all()) and bool((boxes <= 1).all())
        assert boxes.shape == (len(scores), 4)


def test_nothing_above_threshold_gives_empty_results(torchvision_ssd: torch.nn.Module) -> None:
    conf = torch.zeros(2, ANCHORS.shape[0], NUM_CLASSES)
    conf[..., 0] = 20.0
    conf[1, 7, 3] = 25.0  # one detection in the second image only
    loc = torch.zeros(2, ANCHORS.shape[0], 4)
    ours = postprocess(conf, loc, ANCHORS)
    assert ours[0]["boxes"].shape == (0, 4) and ours[0]["scores"].shape == (0,) and ours[0]["labels"].shape == (0,)
    assert ours[1]["labels"].tolist() == [3]
    torch.testing.assert_close(ours[1]["boxes"][0], ANCHORS_XYXY[7].clamp(0, 1), **TOL)
    assert_same_detections(ours, torchvision_detections(torchvision_ssd, conf, loc))


def test_nms_by_hand() -> None:
    """Three default boxes of class 1: two overlapping (IoU 0.81 > 0.45), one apart; and the same box as class 2."""
    anchors = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.31, 0.31, 0.2, 0.2], [0.8, 0.8, 0.2, 0.2]])
    conf = torch.full((1, 3, 3), -10.0)
    conf[0, :, 1] = torch.tensor([2.0, 3.0, 1.0])
    conf[0, 0, 2] = 0.0
    out = postprocess(conf, torch.zeros(1, 3, 4), anchors)[0]
    assert out["labels"].tolist() == [1, 1, 2]
    torch.testing.assert_close(out["boxes"][0], torch.tensor([0.21, 0.21, 0.41, 0.41]), **TOL)
    torch.testing.assert_close(out["boxes"][1], torch.tensor([0.7, 0.7, 0.9, 0.9]), **TOL)
    torch.testing.assert_close(out["boxes"][2], torch.tensor([0.2, 0.2, 0.4, 0.4]), **TOL)


@pytest.mark.parametrize("x", [0.3, 0.61, 0.7, 0.77])
@pytest.mark.parametrize("width", [0.05, 0.08])
@pytest.mark.parametrize("margin", [1e-4, -1e-4])
def test_nms_near_the_threshold_in_the_last_image_of_a_batch(x: float, width: float, margin: float) -> None:
    """Two boxes of the last class in the last of 16 images with IoU 0.45 +- 1e-4 (checked in float64): the weaker
    one is suppressed exactly when IoU > 0.45, wherever the image sits in the batch. (NMS on float32 boxes shifted
    by the (image, class) group offset got about half of these wrong.)"""
    iou = 0.45 + margin
    shift = width * (1 - iou) / (1 + iou)  # same-size boxes shifted along x: IoU = (w - d) / (w + d)
    anchors = torch.tensor([[x + width / 2, 0.5, width, width], [x + shift + width / 2, 0.5, width, width]])
    xyxy = box_convert(anchors.double(), "cxcywh", "xyxy")
    exact = float(box_iou(xyxy[:1], xyxy[1:]))  # of the float32 boxes, computed in float64
    assert abs(exact - iou) < 2e-5
    conf = torch.full((16, 2, NUM_CLASSES), -20.0)
    conf[-1, :, NUM_CLASSES - 1] = torch.tensor([5.0, 4.0])
    last = postprocess(conf, torch.zeros(16, 2, 4), anchors)[-1]
    assert len(last["scores"]) == (1 if exact > 0.45 else 2)


@pytest.mark.parametrize("batched", [True, False])
def test_decode_matches_torchvision_box_coder(batched: bool) -> None:
    g = torch.Generator().manual_seed(6)
    offsets = torch.randn(2, ANCHORS.shape[0], 4, generator=g) * 2
    offsets[:, :5, 2:] = 50.0  # log-scale clamp at log(1000 / 16)
    offsets = offsets if batched else offsets[0]
    ours = decode(offsets, ANCHORS)
    flat = offsets.reshape(-1, 4)
    expected = CODER.decode_single(flat, ANCHORS_XYXY.repeat(flat.shape[0] // ANCHORS.shape[0], 1))
    torch.testing.assert_close(ours.reshape(-1, 4), expected, **TOL)
    assert torch.isfinite(ours).all()


@pytest.mark.parametrize(
    ("name", "conf", "loc", "anchors"),
    [
        ("conf", torch.zeros(8732, NUM_CLASSES), torch.zeros(1, 8732, 4), ANCHORS),
        ("loc", torch.zeros(1, 8732, NUM_CLASSES), torch.zeros(1, 8731, 4), ANCHORS),
        ("loc", torch.zeros(1, 8732, NUM_CLASSES), torch.zeros(1, 8732, 3), ANCHORS),
        ("loc", torch.zeros(1, 8732, NUM_CLASSES), torch.zeros(2, 8732, 4), ANCHORS),
        ("anchors", torch.zeros(1, 8732, NUM_CLASSES), torch.zeros(1, 8732, 4), ANCHORS[:100]),
    ],
)
def test_postprocess_bad_input_names_the_argument(
    name: str, conf: torch.Tensor, loc: torch.Tensor, anchors: torch.Tensor
) -> None:
    with pytest.raises(ValueError, match=name):
        postprocess(conf, loc, anchors)


@pytest.mark.parametrize(
    ("name", "offsets", "anchors"),
    [
        ("offsets", torch.zeros(1, 8731, 4), ANCHORS),
        ("offsets", torch.zeros(8732, 3), ANCHORS),
        ("offsets", [[0.0, 0.0, 0.0, 0.0]], ANCHORS),
        ("anchors", torch.zeros(1, 8732, 4), ANCHORS[:, :2]),
    ],
)
def test_decode_bad_input_names_the_argument(name: str, offsets: torch.Tensor, anchors: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=name):
        decode(offsets, anchors)


def test_boxes_clipped_to_no_area_are_dropped_before_nms() -> None:
    """A box decoded above the image clips to zero height: it is no detection and suppresses nothing. (``ssd
    predict`` once returned "bbox": [190.88, 0.0, 103.12, 0.0] for such a box.)"""
    anchors = torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.5, 0.5, 0.4, 0.4], [0.5, 0.5, 0.4, 0.4]])  # cxcywh
    loc = torch.zeros(1, 3, 4)
    loc[0, 0, 1] = -20.0  # centre 0.8 above the image centre: the box lies wholly above the image
    loc[0, 2, 0] = 20.0  # wholly right of the image
    conf = torch.full((1, 3, 3), -10.0)
    conf[0, :, 1] = torch.tensor([5.0, 3.0, 4.0])  # the outside boxes score highest
    out = postprocess(conf, loc, anchors)[0]
    assert out["labels"].tolist() == [1]
    torch.testing.assert_close(out["boxes"][0], torch.tensor([0.3, 0.3, 0.7, 0.7]), **TOL)
    # Only the boxes outside: no detection at all.
    out = postprocess(conf[:, [0, 2]], loc[:, [0, 2]], anchors[:2])[0]
    assert out["boxes"].shape == (0, 4) and out["scores"].shape == (0,)


@pytest.mark.parametrize("regime", ["dense", "trained-like"])
def test_the_cuda_nms_gives_the_same_detections(monkeypatch: pytest.MonkeyPatch, regime: str) -> None:
    """``postprocess`` runs the NMS chosen for its inputs' device; CUDA's choice (torchvision's kernel), run here
    on the CPU, gives the same detections in the same order, ties in score included."""
    from ssdcli.core import postprocess as module
    from ssdcli.core.nms import torchvision_grouped_nms

    conf, loc = dense_outputs(4, 2) if regime == "dense" else trained_like_outputs(4, 2)
    expected = postprocess(conf, loc, ANCHORS)
    asked: list[str] = []

    def cuda_choice(device_type: str):  # what nms_for_device("cuda") returns, whatever the device
        asked.append(device_type)
        return torchvision_grouped_nms

    monkeypatch.setattr(module, "nms_for_device", cuda_choice)
    got = postprocess(conf, loc, ANCHORS)
    assert asked == ["cpu"]
    assert sum(len(d["scores"]) for d in expected) > 100
    for ours, theirs in zip(expected, got):
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(ours[key], theirs[key])
