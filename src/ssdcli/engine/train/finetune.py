"""``ssd train --weights``: start from one of torchvision's COCO-trained SSD detectors."""

from __future__ import annotations

import dataclasses

from ssdcli.config import ModelSettings
from ssdcli.errors import UsageError
from ssdcli.models.pretrained import load_pretrained
from ssdcli.models.ssd import SSD


def start_from_detector(settings: ModelSettings, class_names: tuple[str, ...]) -> tuple[SSD, str]:
    """The detector ``settings.weights`` (weights name or state dict file) ready to train on ``class_names``
    (index 0 = background), and one line saying what was kept.

    The architecture, default boxes and input normalisation are the detector's; images are resized as ssdcli's
    training pipeline does (8-bit, antialiased), not as torchvision's detection transform. When the data's classes
    are not the detector's (by name, in order), only the class head starts afresh; the backbone and box head are
    kept.
    """
    if settings.backbone_weights is not None:
        raise UsageError("`weights` loads a whole detector; leave out `backbone_weights`")
    if settings.anchors is not None:
        raise UsageError("`weights`: the detector's default boxes come with its weights; leave out `anchors`")
    pretrained = load_pretrained(str(settings.weights))
    model = pretrained.model
    model.config = dataclasses.replace(model.config, resize="antialias")  # trained and run through ssdcli's pipeline
    arch, layout = model.config.arch, model.config.layout
    if settings.arch not in (ModelSettings.arch, arch):
        raise UsageError(f"`arch` {settings.arch}: the weights {pretrained.path} are for {arch}")
    if settings.img_size is not None and settings.img_size != layout.image_size:
        raise UsageError(f"`img_size` {settings.img_size}: {arch} from `weights` takes {layout.image_size} px inputs")
    theirs = len(pretrained.spec.class_names) - 1
    name = pretrained.path.name
    if tuple(class_names[1:]) == pretrained.spec.class_names[1:]:
        return model, f"`weights` {name}: {arch}, every layer kept (the data has the weights' {theirs} classes)"
    model.reset_classes(len(class_names))
    return model, (
        f"`weights` {name}: {arch}, class head re-initialised for {len(class_names) - 1} classes "
        f"(the weights have {theirs}); backbone and box head kept"
    )
