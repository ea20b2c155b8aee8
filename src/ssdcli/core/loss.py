"""SSD multibox loss with hard negative mining (DESIGN.md 1.4)."""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .boxes import check_tensor

Mining = Literal["image", "batch"]
Normalize = Literal["positives", "batch"]


class SSDLoss(NamedTuple):
    """The two parts of the SSD loss, each already divided by the normaliser.

    conf: softmax cross-entropy over positives and mined negatives.
    loc: alpha * smooth L1 over the offsets of positives.
    """

    conf: Tensor
    loc: Tensor

    @property
    def total(self) -> Tensor:
        return self.conf + self.loc


def _check(conf: Tensor, loc: Tensor, labels: Tensor, offsets: Tensor, neg_ratio: float, mining: str, normalize: str) -> None:
    check_tensor("conf", conf, 3)
    check_tensor("loc", loc, 3, 4)
    check_tensor("labels", labels, 2)
    check_tensor("offsets", offsets, 3, 4)
    batch, anchors = conf.shape[:2]
    for name, tensor in (("loc", loc), ("offsets", offsets)):
        if tensor.shape[:2] != (batch, anchors):
            raise ValueError(f"{name}: expected shape [{batch}, {anchors}, 4] to match conf, got {tuple(tensor.shape)}")
    if labels.shape != (batch, anchors):
        raise ValueError(f"labels: expected shape [{batch}, {anchors}] to match conf, got {tuple(labels.shape)}")
    if labels.is_floating_point():
        raise ValueError(f"labels: expected an integer tensor, got dtype {labels.dtype}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= conf.shape[2]):
        raise ValueError(
            f"labels: values must lie in 0..{conf.shape[2] - 1} for conf with {conf.shape[2]} classes, "
            f"got {int(labels.min())}..{int(labels.max())}"
        )
    if neg_ratio < 0:
        raise ValueError(f"neg_ratio: expected a value >= 0, got {neg_ratio}")
    if mining not in ("image", "batch"):
        raise ValueError(f"mining: expected 'image' or 'batch', got {mining!r}")
    if normalize not in ("positives", "batch"):
        raise ValueError(f"normalize: expected 'positives' or 'batch', got {normalize!r}")


def _first_k_largest(values: Tensor, k: Tensor) -> Tensor:
    """Mask of the k[i] largest entries of each row of ``values`` [R, N], ties taken in index order (what ranking by
    a stable descending sort keeps); k [R, 1] int64 >= 0. One top-k of the largest k instead of a sort of the row:
    the k-th largest value of a row is its cut-off, entries above it are kept, and entries equal to it are kept
    in index order until the row has k."""
    k = k.clamp(max=values.shape[-1])
    largest = int(k.max()) if k.numel() else 0
    if largest == 0:
        return torch.zeros_like(values, dtype=torch.bool)
    top = torch.topk(values, largest, dim=-1).values  # [R, largest], descending
    cutoff = top.gather(-1, (k - 1).clamp(min=0))  # [R, 1]
    above = values > cutoff
    at = values == cutoff
    room = k - above.sum(dim=-1, keepdim=True)  # [R, 1]: how many at the cut-off still fit
    return above | (at & (at.cumsum(dim=-1) <= room))


def mine_hard_negatives(background_loss: Tensor, positive: Tensor, neg_ratio: float, mining: Mining) -> Tensor:
    """Which background default boxes enter the confidence loss.

    Args:
        background_loss: [B, A] cross-entropy of class 0 (higher = harder negative).
        positive: [B, A] bool.
        mining: "image" keeps the 3 * positives hardest negatives of each image (none where an image has no
            positives); "batch" ranks across the whole batch and keeps exactly k = 3 * N + B (the reference).
            Both are capped by the negatives available and break ties by anchor order.

    Returns:
        [B, A] bool mask of kept negatives.
    """
    negative = ~positive
    hardness = background_loss.detach().masked_fill(positive, float("-inf"))
    if mining == "image":
        num_keep = (neg_ratio * positive.sum(dim=1, keepdim=True)).long()  # [B, 1]
        return negative & _first_k_largest(hardness, num_keep)
    batch = positive.shape[0]
    num_keep = (neg_ratio * positive.sum(dtype=torch.float64)).long().view(1, 1) + batch  # [1, 1]
    return negative & _first_k_largest(hardness.reshape(1, -1), num_keep).reshape(hardness.shape)


def ssd_loss(
    conf: Tensor,
    loc: Tensor,
    labels: Tensor,
    offsets: Tensor,
    neg_ratio: float = 3,
    mining: Mining = "image",
    normalize: Normalize = "positives",
    alpha: float = 1.0,
    checked: bool = True,
) -> SSDLoss:
    """SSD loss of a batch.

    Args:
        conf: [B, A, C] raw class logits (class 0 = background).
        loc: [B, A, 4] raw predicted offsets.
        labels: [B, A] int64 matched labels (0 = background), from :func:`ssdcli.encode`.
        offsets: [B, A, 4] encoded targets, from :func:`ssdcli.encode`.
        neg_ratio: negatives kept per positive.
        mining: "image" (per image, torchvision) or "batch" (the reference); see :func:`mine_hard_negatives`.
        normalize: divide by the number of positives N (at least 1; the paper) or by the batch size (the reference).
        alpha: weight of the localisation loss.
        checked: check the inputs first (shapes, dtypes, the label range: two host synchronisations). ``False``
            is for labels straight from :func:`ssdcli.encode` of checked batches (a training loop); one host
            synchronisation is left, the largest number of negatives an image keeps.
    """
    if checked:
        _check(conf, loc, labels, offsets, neg_ratio, mining, normalize)
    batch, anchors, num_classes = conf.shape
    positive = labels > 0  # [B, A]
    cross_entropy = F.cross_entropy(conf.reshape(-1, num_classes), labels.reshape(-1), reduction="none")
    cross_entropy = cross_entropy.reshape(batch, anchors)  # [B, A]; for negatives this is the class-0 loss
    kept_negative = mine_hard_negatives(cross_entropy, positive, neg_ratio, mining)
    conf_sum = (cross_entropy * (positive | kept_negative)).sum()
    loc_sum = (F.smooth_l1_loss(loc, offsets, reduction="none", beta=1.0).sum(dim=-1) * positive).sum()
    divisor = positive.sum().clamp(min=1) if normalize == "positives" else torch.tensor(batch, device=conf.device)
    divisor = divisor.to(conf.dtype)
    return SSDLoss(conf=conf_sum / divisor, loc=alpha * loc_sum / divisor)
