"""``ssd train --weights``: start from one of torchvision's COCO-trained SSD detectors."""

from __future__ import annotations

import dataclasses

from ssdcli.config import TrainConfig
from ssdcli.errors import UsageError
from ssdcli.models.pretrained import load_pretrained
from ssdcli.models.ssd import SSD


def start_from_detector(config: TrainConfig, class_names: tuple[str, ...]) -> tuple[SSD, str]:
    """The detector ``config.weights`` (weights name or state dict file) ready to train on ``class_names``
    (index 0 = background), and one line saying what was kept.

    The architecture, default boxes and input normalisation are the detector's; images are resized as ssdcli's
    training pipeline does (8-bit, antialiased), not as torchvision's detection transform. When the data's classes
    are not the detector's (by name, in order), only the class head starts afresh; the backbone and box head are
    kept.
    """
    if config.backbone_weights is not None:
        raise UsageError("`weights` loads a whole detector; leave out `backbone_weights`")
    if config.anchors is not None:
        raise UsageError("`weights`: the detector's default boxes come with its weights; leave out `anchors`")
    pretrained = load_pretrained(str(config.weights))
    model = pretrained.model
    model.config = dataclasses.replace(model.config, resize="antialias")  # trained and run through ssdcli's pipeline
    arch, layout = model.config.arch, model.config.layout
    if config.arch not in (TrainConfig.arch, arch):
        raise UsageError(f"`arch` {config.arch}: the weights {pretrained.path} are for {arch}")
    if config.img_size is not None and config.img_size != layout.image_size:
        raise UsageError(f"`img_size` {config.img_size}: {arch} from `weights` takes {layout.image_size} px inputs")
    theirs = len(pretrained.class_names) - 1
    name = pretrained.path.name
    if tuple(class_names[1:]) == pretrained.class_names[1:]:
        return model, f"`weights` {name}: {arch}, every layer kept (the data has the weights' {theirs} classes)"
    model.reset_classes(len(class_names))
    return model, (
        f"`weights` {name}: {arch}, class head re-initialised for {len(class_names) - 1} classes "
        f"(the weights have {theirs}); backbone and box head kept"
    )
