"""A NumPy transcription of the SSD reference algorithm (DESIGN.md 1.3-1.4), used as an independent oracle.

Written from the TensorFlow reference (``tf_ssd_bboxes_encode_layer`` and ``ssd_losses``), deliberately in the
reference's own style: one image at a time, a Python loop over GT boxes, float64 throughout. Nothing here imports
ssdcli, so the tests compare the batched engine against code that shares none of its logic.

Two variants, chosen by arguments:
- the reference: threshold-only matching (strict ``>``, a later GT only takes a default box if its IoU is greater
  than the score stored so far), batch-wide hard negative mining with k = 3 * N + B, division by the batch size
  (``best_anchor=False``, ``mining="batch"``, ``normalize="batch"``);
- the paper: the threshold rule plus the best-anchor rule, per-image mining with k = 3 * positives of the image,
  division by the number of positives N, at least 1 (``best_anchor=True``, ``mining="image"``,
  ``normalize="positives"``).

Known, intended differences from the TensorFlow code (DESIGN.md 1.3-1.4):
- the reference encodes background default boxes against a dummy box (0, 0, 1, 1); here their offsets are 0,
  because no loss ever reads them;
- the reference drops every negative whose background probability equals the k-th one (strict ``<``); here exactly
  k are kept, ties broken by position (image, then default box);
- this version of the reference stores a default box's IoU in its scores only when the box is matched (0
  elsewhere); ssdcli's scores are the best IoU with any GT everywhere. Both are returned ("ref_scores",
  "best_iou"), and they agree on every matched default box.
"""

from __future__ import annotations

import numpy as np

PRIOR_SCALING = (0.1, 0.1, 0.2, 0.2)


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """[N, 4] cxcywh -> [N, 4] xyxy."""
    cx, cy, w, h = boxes.T
    return np.stack([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0], axis=1)


def jaccard_with_anchors(anchors_xyxy: np.ndarray, bbox: np.ndarray) -> np.ndarray:
    """IoU of one box [4] xyxy with every default box [A, 4] xyxy; [A]. As the reference computes it."""
    int_xmin = np.maximum(anchors_xyxy[:, 0], bbox[0])
    int_ymin = np.maximum(anchors_xyxy[:, 1], bbox[1])
    int_xmax = np.minimum(anchors_xyxy[:, 2], bbox[2])
    int_ymax = np.minimum(anchors_xyxy[:, 3], bbox[3])
    w = np.maximum(int_xmax - int_xmin, 0.0)
    h = np.maximum(int_ymax - int_ymin, 0.0)
    inter = w * h
    vol_anchors = (anchors_xyxy[:, 2] - anchors_xyxy[:, 0]) * (anchors_xyxy[:, 3] - anchors_xyxy[:, 1])
    union = vol_anchors - inter + (bbox[2] - bbox[0]) * (bbox[3] - bbox[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def encode_box(bbox: np.ndarray, anchor_cxcywh: np.ndarray) -> np.ndarray:
    """Offsets [4] of one box xyxy against one default box cxcywh (DESIGN.md 1.3.4)."""
    g_cx, g_cy = (bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0
    g_w, g_h = bbox[2] - bbox[0], bbox[3] - bbox[1]
    d_cx, d_cy, d_w, d_h = anchor_cxcywh
    return np.array(
        [
            (g_cx - d_cx) / d_w / PRIOR_SCALING[0],
            (g_cy - d_cy) / d_h / PRIOR_SCALING[1],
            np.log(g_w / d_w) / PRIOR_SCALING[2],
            np.log(g_h / d_h) / PRIOR_SCALING[3],
        ]
    )


def encode_image(
    boxes: np.ndarray,
    classes: np.ndarray,
    anchors_cxcywh: np.ndarray,
    threshold: float = 0.5,
    best_anchor: bool = False,
    tie_choices: dict[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Match and encode one image.

    Args:
        boxes: [G, 4] xyxy normalised; classes: [G] with -1 = padding (skipped, order of the others kept).
        anchors_cxcywh: [A, 4].
        best_anchor: False = the reference (loop over GTs, strict ``>`` threshold and ``>`` stored score);
            True = the paper: afterwards, GT by GT in order, hand each GT its highest-IoU default box (the first
            one on ties) if that IoU is > 0, so a later GT choosing the same box takes it over.
        tie_choices: GT index -> default box to use as that GT's best box instead of the first maximum; it must
            tie with the maximum (within 1e-6, i.e. float32 rounding). A GT inside several default boxes of the
            same area has the same IoU with all of them in exact arithmetic, and which one wins in floating point
            depends on rounding; this lets a test check that another implementation picked one of the tied boxes.

    Returns:
        "labels" [A] int64, "offsets" [A, 4] (0 for background), "gt_index" [A] (-1 for background, index into
        the padded input), "ref_scores" [A] (the reference's feat_scores: matched IoU above the threshold,
        else 0), "best_iou" [A] (highest IoU with any valid GT, 0 if none).
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    anchors = np.asarray(anchors_cxcywh, dtype=np.float64)
    anchors_xyxy = cxcywh_to_xyxy(anchors)
    num_anchors = anchors.shape[0]
    feat_scores = np.zeros(num_anchors)
    gt_index = np.full(num_anchors, -1, dtype=np.int64)
    best_iou = np.zeros(num_anchors)
    ious: dict[int, np.ndarray] = {}
    for i in range(boxes.shape[0]):
        if classes[i] < 1:
            continue
        scores = jaccard_with_anchors(anchors_xyxy, boxes[i])
        ious[i] = scores
        best_iou = np.maximum(best_iou, scores)
        mask = (scores > threshold) & (scores > feat_scores)
        gt_index = np.where(mask, i, gt_index)
        feat_scores = np.where(mask, scores, feat_scores)
    if best_anchor:
        for i, scores in ious.items():
            best = int(np.argmax(scores))
            if tie_choices is not None and i in tie_choices:
                chosen = tie_choices[i]
                if not scores[chosen] >= scores[best] - 1e-6:
                    raise AssertionError(f"GT {i}: box {chosen} (IoU {scores[chosen]}) does not tie with box {best}")
                best = chosen
            if scores[best] > 0:
                gt_index[best] = i
    labels = np.zeros(num_anchors, dtype=np.int64)
    offsets = np.zeros((num_anchors, 4))
    for a in np.nonzero(gt_index >= 0)[0]:
        labels[a] = classes[gt_index[a]]
        offsets[a] = encode_box(boxes[gt_index[a]], anchors[a])
    return {
        "labels": labels,
        "offsets": offsets,
        "gt_index": gt_index,
        "ref_scores": feat_scores,
        "best_iou": best_iou,
    }


def encode_batch(
    boxes: np.ndarray,
    classes: np.ndarray,
    anchors_cxcywh: np.ndarray,
    threshold: float = 0.5,
    best_anchor: bool = False,
    tie_choices: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """:func:`encode_image` for every image of [B, G, 4] / [B, G]; every output gets a leading B axis.

    tie_choices: optional [B, G] default box per GT, see :func:`encode_image`.
    """
    per_image = [
        encode_image(
            boxes[b],
            classes[b],
            anchors_cxcywh,
            threshold,
            best_anchor,
            None if tie_choices is None else dict(enumerate(int(a) for a in tie_choices[b])),
        )
        for b in range(boxes.shape[0])
    ]
    return {key: np.stack([item[key] for item in per_image]) for key in per_image[0]}


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis, float64."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def abs_smooth(x: np.ndarray) -> np.ndarray:
    """The reference's smooth L1: 0.5 x^2 where |x| < 1, |x| - 0.5 elsewhere."""
    absx = np.abs(x)
    return np.where(absx < 1.0, 0.5 * x * x, absx - 0.5)


def ssd_losses(
    logits: np.ndarray,
    localisations: np.ndarray,
    gclasses: np.ndarray,
    glocalisations: np.ndarray,
    negative_ratio: float = 3.0,
    alpha: float = 1.0,
    mining: str = "batch",
    normalize: str = "batch",
) -> tuple[float, float]:
    """SSD loss, returns (confidence part, localisation part), each already divided by the normaliser.

    Args:
        logits: [B, A, C]; localisations: [B, A, 4]; gclasses: [B, A] (0 = background); glocalisations: [B, A, 4].
        mining: "batch" (the reference) = rank the negatives of the whole batch by background probability, lowest
            first, and keep exactly min(k, negatives) with k = int(negative_ratio * N) + B;
            "image" (the paper) = per image, keep min(int(negative_ratio * n_b), negatives of b).
            Ties are broken by position (image, then default box).
        normalize: "batch" (the reference) = divide by B; "positives" (the paper) = divide by max(1, N).
    """
    logits = np.asarray(logits, dtype=np.float64)
    batch = logits.shape[0]
    log_probs = log_softmax(logits)  # [B, A, C]
    pmask = np.asarray(gclasses) > 0
    nmask = ~pmask
    # The reference's nvalues: background probability for negatives, 1 for positives (never picked first).
    nvalues = np.where(nmask, np.exp(log_probs[..., 0]), 1.0)
    kept = np.zeros_like(nmask)
    if mining == "batch":
        n_neg = min(int(negative_ratio * int(pmask.sum())) + batch, int(nmask.sum()))
        order = np.argsort(nvalues.reshape(-1), kind="stable")[:n_neg]  # lowest background probability first
        kept.reshape(-1)[order] = True
    elif mining == "image":
        for b in range(batch):
            n_neg = min(int(negative_ratio * int(pmask[b].sum())), int(nmask[b].sum()))
            order = np.argsort(nvalues[b], kind="stable")[:n_neg]
            kept[b, order] = True
    else:
        raise ValueError(f"mining: expected 'batch' or 'image', got {mining!r}")
    if normalize == "batch":
        divisor = float(batch)
    elif normalize == "positives":
        divisor = float(max(1, int(pmask.sum())))
    else:
        raise ValueError(f"normalize: expected 'batch' or 'positives', got {normalize!r}")
    kept &= nmask
    true_class = np.take_along_axis(log_probs, np.asarray(gclasses)[..., None].astype(np.int64), axis=-1)[..., 0]
    loss_pos = -(true_class * pmask).sum()
    loss_neg = -(log_probs[..., 0] * kept).sum()
    diff = np.asarray(localisations, dtype=np.float64) - np.asarray(glocalisations, dtype=np.float64)
    loss_loc = (abs_smooth(diff) * (alpha * pmask)[..., None]).sum()
    return (loss_pos + loss_neg) / divisor, loss_loc / divisor
