"""The SSD network: a backbone and a head, with one input/output contract in training and evaluation mode."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from torch import Tensor, nn

from .heads import SSDHead
from .spec import ModelConfig


class SSD(nn.Module):
    """Single-shot detector: images -> per-default-box class logits and encoded box offsets.

    Decoding (``ssdcli.decode``), NMS (``ssdcli.postprocess``) and the loss (``ssdcli.ssd_loss``) live outside
    the module, so the output does not change with ``self.training``. Rows follow
    ``ssdcli.default_boxes(config.layout)``.

    Attributes:
        config: the configuration the modules were built from (enough to rebuild them with ``build_model``).
        backbone: images [B, 3, S, S] -> feature maps [B, C_k, f_k, f_k].
        head: feature maps -> (conf [B, A, C], loc [B, A, 4]).
    """

    def __init__(self, config: ModelConfig, backbone: nn.Module, head: SSDHead) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.head = head

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Images [B, 3, S, S] (normalised with ``config.mean``/``config.std``) -> (conf [B, A, C], loc [B, A, 4]).

        ``conf`` holds raw class logits (class 0 = background); ``loc`` holds offsets encoded as in
        DESIGN.md 1.3.4 against the default boxes of ``config.layout``.
        """
        size = self.config.layout.image_size
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != size or images.shape[3] != size:
            raise ValueError(f"images: expected shape [B, 3, {size}, {size}], got {tuple(images.shape)}")
        outputs: tuple[Tensor, Tensor] = self.head(self.backbone(images))
        return outputs

    def reset_classes(self, num_classes: int) -> None:
        """Start the class head afresh for ``num_classes`` classes (background included), e.g. to fine-tune on
        another class list; the backbone and the box head are kept and ``config`` follows."""
        self.head.reset_classes(num_classes)
        self.config = dataclasses.replace(self.config, num_classes=num_classes)

    def keep_classes(self, rows: Sequence[int | None]) -> None:
        """A class head for ``len(rows)`` classes (background included) whose class j keeps the weights of this
        head's class ``rows[j]`` (None: starts afresh); the backbone and the box head are kept."""
        self.head.keep_class_rows(rows)
        self.config = dataclasses.replace(self.config, num_classes=len(rows))
