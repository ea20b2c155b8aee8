"""Feature extractors of the SSD models: each maps images [B, 3, S, S] to a list of feature maps [B, C_k, f_k, f_k].

- :class:`VGG16Backbone`: SSD300/SSD512 as in the paper (SSD paper, Fig. 2 and p. 11 footnote 5), built the way
  torchvision's ``ssd300_vgg16`` does: VGG16 conv1_1..conv5_3 from torchvision, conv4_3 L2-normalised with a
  learnable scale (init 20), pool5 3x3 stride 1, dilated fc6 and fc7 as convolutions, extra layers to conv11_2
  (conv12_2 for SSD512).
- :class:`MobileNetV3Backbone`: SSDLite320 as torchvision's ``ssdlite320_mobilenet_v3_large`` (MobileNetV3 paper,
  section 6.3): maps from the C4 expansion layer and C5, extras with depthwise-separable blocks.
- :class:`TinyBackbone`: a small conv net with BatchNorm for tests and the built-in defaults (``ssd_tiny`` at 160x160,
  ``ssd_tiny256`` at 256x256: maps 32, 16, 8, 4, 2).

Every backbone has ``out_channels`` (one per feature map). The VGG16 and MobileNetV3 backbones keep the layers
that torchvision's ImageNet classifier weights exist for in ``trunk``, with torchvision's ``features.N`` numbering
(see ``weights.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torchvision.models import mobilenet_v3_large
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers as vgg_make_layers

# Index of the ReLU after conv4_3 in torchvision's VGG16 ``features`` and the number of layers kept
# (up to the ReLU after conv5_3; pool5 is replaced).
_VGG_CONV4_3 = 22
_VGG_KEEP = 30
_VGG_POOL3 = 16


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every convolution of ``module`` (SSD paper; torchvision)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def normal_init(module: nn.Module, std: float = 0.03) -> None:
    """N(0, std) weights and zero biases for every convolution (torchvision's SSDLite initialisation)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, mean=0.0, std=std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learnable per-channel scale (ParseNet; SSD conv4_3).

    Computed in float32 so that the sum of squares cannot overflow under float16 autocast.
    """

    def __init__(self, channels: int, scale: float = 20.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))

    def forward(self, x: Tensor) -> Tensor:
        normalised = F.normalize(x.float(), p=2.0, dim=1, eps=1e-12).to(x.dtype)  # [B, C, H, W]
        return normalised * self.weight.view(1, -1, 1, 1).to(x.dtype)


def _relu_conv(cin: int, cout: int, kernel_size: int, stride: int = 1, padding: int = 0) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding), nn.ReLU(inplace=True)]


def _vgg_extra(in_channels: int, mid: int, out: int, kernel_size: int, stride: int, padding: int) -> nn.Sequential:
    """1x1 reduction then the extra layer's main conv (conv8_2 ... conv12_2)."""
    return nn.Sequential(*_relu_conv(in_channels, mid, 1), *_relu_conv(mid, out, kernel_size, stride, padding))


class VGG16Backbone(nn.Module):
    """VGG16 for SSD300 (``highres=False``: maps 38, 19, 10, 5, 3, 1) or SSD512 (maps 64, 32, 16, 8, 4, 2, 1).

    SSD300's extras are torchvision's. SSD512 follows the paper's Caffe model: conv10_2 and conv11_2 are 3x3
    stride 2 (padding 1) and conv12_2 is 4x4 with padding 1. (torchvision's ``highres`` extractor only appends a
    4x4 conv to the SSD300 extras, which gives maps 6, 4, 1 instead of 4, 2, 1 at 512.)
    """

    def __init__(self, highres: bool = False) -> None:
        super().__init__()
        trunk = vgg_make_layers(vgg_cfgs["D"], batch_norm=False)  # torchvision's vgg16().features
        for layer in trunk.modules():  # torchvision VGG's initialisation
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
        trunk[_VGG_POOL3].ceil_mode = True  # 75 -> 38 at 300 (the paper's sizes)
        self.trunk = trunk[:_VGG_KEEP]  # conv1_1 .. relu5_3; keys match torchvision's ``features.N``
        self.l2norm = L2Norm(512, scale=20.0)
        self.fc = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),  # pool5
            nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6),  # fc6, atrous
            nn.ReLU(inplace=True),
            nn.Conv2d(1024, 1024, kernel_size=1),  # fc7
            nn.ReLU(inplace=True),
        )
        if highres:
            extras = [
                _vgg_extra(1024, 256, 512, 3, 2, 1),  # conv8_2
                _vgg_extra(512, 128, 256, 3, 2, 1),  # conv9_2
                _vgg_extra(256, 128, 256, 3, 2, 1),  # conv10_2
                _vgg_extra(256, 128, 256, 3, 2, 1),  # conv11_2
                _vgg_extra(256, 128, 256, 4, 1, 1),  # conv12_2
            ]
        else:
            extras = [
                _vgg_extra(1024, 256, 512, 3, 2, 1),  # conv8_2
                _vgg_extra(512, 128, 256, 3, 2, 1),  # conv9_2
                _vgg_extra(256, 128, 256, 3, 1, 0),  # conv10_2
                _vgg_extra(256, 128, 256, 3, 1, 0),  # conv11_2
            ]
        self.extras = nn.ModuleList(extras)
        xavier_init(self.fc)
        xavier_init(self.extras)
        self.out_channels: tuple[int, ...] = (512, 1024, 512) + (256,) * (len(extras) - 1)

    def freezable_stages(self) -> list[nn.Module]:
        """The ImageNet trunk in its five stages (conv1 .. conv5, each up to its pooling), input first."""
        pools = [i for i, layer in enumerate(self.trunk) if isinstance(layer, nn.MaxPool2d)]
        bounds = [0, *(i + 1 for i in pools), len(self.trunk)]
        return [self.trunk[start:end] for start, end in zip(bounds, bounds[1:]) if end > start]

    def forward(self, images: Tensor) -> list[Tensor]:
        x = images
        features = []
        for index, layer in enumerate(self.trunk):
            x = layer(x)
            if index == _VGG_CONV4_3:
                features.append(self.l2norm(x))  # conv4_3, [B, 512, 38, 38] at 300
        x = self.fc(x)
        features.append(x)  # fc7, [B, 1024, 19, 19] at 300
        for extra in self.extras:
            x = extra(x)
            features.append(x)
        return features


def _extra_block(in_channels: int, out_channels: int, norm_layer: Callable[..., nn.Module]) -> nn.Sequential:
    """SSDLite extra layer: 1x1 to half the channels, 3x3 depthwise stride 2, 1x1 to ``out_channels`` (BN, ReLU6)."""
    mid = out_channels // 2

    def conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
        padding = (kernel - 1) // 2
        return [
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            norm_layer(cout),
            nn.ReLU6(inplace=True),
        ]

    return nn.Sequential(
        nn.Sequential(*conv(in_channels, mid, 1)),
        nn.Sequential(*conv(mid, mid, 3, stride=2, groups=mid)),
        nn.Sequential(*conv(mid, out_channels, 1)),
    )


#: BatchNorm of torchvision's SSDLite (backbone, extras and heads).
SSDLITE_NORM: Callable[..., nn.Module] = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)


class MobileNetV3Backbone(nn.Module):
    """MobileNetV3-Large (width 1.0) for SSDLite320: maps 20, 10 (C4 expansion, C5) then 5, 3, 2, 1 (extras).

    ``reduced_tail`` halves the channels of the last stage (torchvision's choice when no ImageNet weights are
    used); ImageNet weights exist only for the full tail.
    """

    def __init__(self, reduced_tail: bool = True) -> None:
        super().__init__()
        trunk = mobilenet_v3_large(weights=None, norm_layer=SSDLITE_NORM, reduced_tail=reduced_tail).features
        normal_init(trunk)
        stage_starts = [i for i, block in enumerate(trunk) if getattr(block, "_is_cn", False)]
        self.c4_index = stage_starts[-1]  # the last stride-2 block; its expansion conv gives the first map
        if trunk[self.c4_index].use_res_connect:
            raise ValueError("MobileNetV3 C4 block has a residual connection; cannot tap its expansion layer")
        self.trunk = trunk  # keys match torchvision's ``features.N``
        last = trunk[-1].out_channels
        self.extras = nn.ModuleList(
            [
                _extra_block(last, 512, SSDLITE_NORM),
                _extra_block(512, 256, SSDLITE_NORM),
                _extra_block(256, 256, SSDLITE_NORM),
                _extra_block(256, 128, SSDLITE_NORM),
            ]
        )
        normal_init(self.extras)
        c4_channels = trunk[self.c4_index].block[0].out_channels
        self.out_channels: tuple[int, ...] = (c4_channels, last, 512, 256, 256, 128)

    def freezable_stages(self) -> list[nn.Module]:
        """The ImageNet trunk in stages that each start with a stride-2 block (the stem with the first), input
        first."""
        starts = [i for i, block in enumerate(self.trunk) if getattr(block, "_is_cn", False)]
        bounds = [0, *(i for i in starts if i > 1), len(self.trunk)]
        return [self.trunk[start:end] for start, end in zip(bounds, bounds[1:])]

    def forward(self, images: Tensor) -> list[Tensor]:
        x = images
        features = []
        for index, block in enumerate(self.trunk):
            if index == self.c4_index:  # no residual here, so the block is its layers in order
                for sub_index, layer in enumerate(block.block):
                    x = layer(x)
                    if sub_index == 0:
                        features.append(x)  # C4 expansion, [B, 672, 20, 20] at 320
            else:
                x = block(x)
        features.append(x)  # C5, [B, 480 or 960, 10, 10] at 320
        for extra in self.extras:
            x = extra(x)
            features.append(x)
        return features


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class TinyBackbone(nn.Module):
    """A small BatchNorm conv net: maps 20, 10, 5, 3, 1 at 160 (strides 8, 16, 32, ~53, 160), widths 16-128.

    Each stage halves the resolution with a 3x3 stride-2 conv; the 20x20 and 10x10 maps get one more 3x3 conv
    each to widen the receptive field (about 31 and 79 pixels) for the objects their default boxes cover.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            [
                nn.Sequential(
                    _conv_bn_relu(3, 16, stride=2),  # 80
                    _conv_bn_relu(16, 32, stride=2),  # 40
                    _conv_bn_relu(32, 64, stride=2),  # 20
                    _conv_bn_relu(64, 64),
                ),
                nn.Sequential(_conv_bn_relu(64, 128, stride=2), _conv_bn_relu(128, 128)),  # 10
                _conv_bn_relu(128, 128, stride=2),  # 5
                _conv_bn_relu(128, 128, stride=2),  # 3
                _conv_bn_relu(128, 128, padding=0),  # 1
            ]
        )
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        self.out_channels: tuple[int, ...] = (64, 128, 128, 128, 128)

    def freezable_stages(self) -> list[nn.Module]:
        """Its five stages, input first."""
        return list(self.stages)

    def forward(self, images: Tensor) -> list[Tensor]:
        x = images
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def feature_map_sizes(backbone: nn.Module, image_size: int) -> tuple[tuple[int, int], ...]:
    """(height, width) of each feature map of ``backbone`` for a [2, 3, S, S] input, S = ``image_size``.

    A dry run on the meta device: shapes only, no arithmetic and no change to the module's parameters or
    buffers (BatchNorm statistics included). Batch 2 so that training-mode BatchNorm accepts 1x1 maps.
    """
    state = {name: tensor.to("meta") for name, tensor in backbone.state_dict(keep_vars=True).items()}
    images = torch.zeros(2, 3, image_size, image_size, device="meta")
    features = functional_call(backbone, state, (images,))
    return tuple((int(f.shape[-2]), int(f.shape[-1])) for f in features)
