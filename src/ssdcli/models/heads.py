"""SSD prediction heads (DESIGN.md 1.2): per feature map, class scores and box offsets for every default box.

A head's output for a map with k boxes per cell has k * K channels (K = 4 offsets or C classes); channel
``a * K + j`` is value j of box a of the cell. Rows of the flattened output follow the anchor order of
``ssdcli.default_boxes``: layer, then row, then column, then box within the cell.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .backbones import SSDLITE_NORM, normal_init, xavier_init


def conv_predictor(in_channels: int, out_channels: int) -> nn.Module:
    """A 3x3 convolution (padding 1): the SSD paper's predictor."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


def separable_predictor(
    in_channels: int, out_channels: int, norm_layer: Callable[..., nn.Module] = SSDLITE_NORM
) -> nn.Module:
    """SSDLite's predictor (MobileNetV2 paper, 6.2): 3x3 depthwise conv + BN + ReLU6, then a 1x1 convolution."""
    return nn.Sequential(
        nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
            norm_layer(in_channels),
            nn.ReLU6(inplace=True),
        ),
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
    )


def flatten_predictions(output: Tensor, columns: int) -> Tensor:
    """[B, k * K, H, W] -> [B, H * W * k, K], rows in (row, col, box) order."""
    batch = output.shape[0]
    return output.permute(0, 2, 3, 1).reshape(batch, -1, columns)  # NHWC first: row, col, then k * K channels


def _weight_and_bias(predictor: nn.Module) -> tuple[Tensor, Tensor]:
    """The weight [out, in, kh, kw] and bias [out] of a class predictor's (last) convolution."""
    if not isinstance(predictor, nn.Conv2d) or predictor.bias is None:
        raise TypeError(f"expected a convolution with a bias, got {type(predictor).__name__}")
    return predictor.weight, predictor.bias


class SSDHead(nn.Module):
    """Class-score and box-offset predictors for every feature map.

    Args:
        in_channels: channels of each feature map.
        boxes_per_cell: default boxes per cell of each map (``AnchorLayout.boxes_per_cell``).
        num_classes: classes including the background (class 0).
        separable: use SSDLite's depthwise-separable predictors (initialised N(0, 0.03) as torchvision does)
            instead of 3x3 convolutions (initialised Xavier-uniform with zero bias as in the SSD paper).
    """

    def __init__(
        self, in_channels: Sequence[int], boxes_per_cell: Sequence[int], num_classes: int, separable: bool = False
    ) -> None:
        super().__init__()
        if len(in_channels) != len(boxes_per_cell):
            raise ValueError(
                f"head: {len(in_channels)} feature maps but {len(boxes_per_cell)} entries of boxes per cell"
            )
        self.num_classes = num_classes
        self.in_channels = tuple(in_channels)
        self.boxes_per_cell = tuple(boxes_per_cell)
        self.separable = separable
        self.conf = self._predictors(num_classes)
        self.loc = self._predictors(4)
        self._initialise(self)

    def _predictors(self, columns: int) -> nn.ModuleList:
        """One predictor per feature map with k * ``columns`` outputs (initialise with :meth:`_initialise`)."""
        predictor = separable_predictor if self.separable else conv_predictor
        return nn.ModuleList(predictor(c, k * columns) for c, k in zip(self.in_channels, self.boxes_per_cell))

    def _initialise(self, module: nn.Module) -> None:
        if self.separable:
            normal_init(module)
        else:
            xavier_init(module)

    def reset_classes(self, num_classes: int) -> None:
        """New, freshly initialised class predictors for ``num_classes`` classes; the box predictors are kept."""
        device = next(self.conf.parameters()).device
        conf = self._predictors(num_classes)
        self._initialise(conf)
        self.num_classes = num_classes
        self.conf = conf.to(device)

    def keep_class_rows(self, rows: Sequence[int | None]) -> None:
        """New class predictors for ``len(rows)`` classes: class j takes this head's weights of class ``rows[j]``
        (at every default box of every cell), or starts afresh where ``rows[j]`` is None. The class-independent
        depthwise part of separable predictors is kept; the box predictors are kept."""
        old, old_classes = self.conf, self.num_classes
        self.reset_classes(len(rows))
        with torch.no_grad():
            for boxes, before, after in zip(self.boxes_per_cell, old, self.conf):
                if self.separable:
                    after.get_submodule("0").load_state_dict(before.get_submodule("0").state_dict())
                    before, after = before.get_submodule("1"), after.get_submodule("1")
                old_weight, old_bias = _weight_and_bias(before)
                new_weight, new_bias = _weight_and_bias(after)
                old_weight = old_weight.view(boxes, old_classes, *old_weight.shape[1:])  # [k, C, Cin, kh, kw]
                new_weight = new_weight.view(boxes, len(rows), *new_weight.shape[1:])
                old_bias, new_bias = old_bias.view(boxes, old_classes), new_bias.view(boxes, len(rows))
                for new, kept in enumerate(rows):
                    if kept is not None:
                        new_weight[:, new] = old_weight[:, kept]
                        new_bias[:, new] = old_bias[:, kept]

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Feature maps [B, C_k, f_k, f_k] -> (conf [B, A, num_classes], loc [B, A, 4]) in anchor order."""
        conf = [flatten_predictions(layer(x), self.num_classes) for layer, x in zip(self.conf, features)]
        loc = [flatten_predictions(layer(x), 4) for layer, x in zip(self.loc, features)]
        return torch.cat(conf, dim=1), torch.cat(loc, dim=1)
