"""``ssd train --weights``: start from a trained detector, one of torchvision's COCO-trained SSDs or a checkpoint of
``ssd train`` (last.pt, best.pt, or one saved for inference), as a new run: the optimizer, schedule and weight
average start afresh (``--resume`` continues a run instead)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from ssdcli.config import ModelSettings
from ssdcli.engine.checkpoint import CHECKPOINT_FORMAT, checkpoint_from_payload, read_payload
from ssdcli.errors import UsageError
from ssdcli.models.build import build_model
from ssdcli.models.pretrained import detector_by_name, load_pretrained
from ssdcli.models.ssd import SSD


def class_rows(theirs: Sequence[str], ours: Sequence[str]) -> list[int | None]:
    """For each of ``ours`` (index 0 the background), the index of the class of that name in ``theirs`` (the
    background always the background), None for a class ``theirs`` lacks."""
    index = {name: i for i, name in enumerate(theirs)}
    return [0, *(index.get(name) for name in ours[1:])]


def class_head_line(theirs: Sequence[str], ours: Sequence[str], rows: Sequence[int | None]) -> str:
    """What the class head kept: rows of classes in both sets at their place, moved, or started afresh."""
    groups: dict[str, list[str]] = {"kept": [], "re-ordered": [], "re-initialised": []}
    for new, (name, kept) in enumerate(zip(ours[1:], rows[1:]), start=1):
        groups["kept" if kept == new else "re-ordered" if kept is not None else "re-initialised"].append(name)
    parts = [
        f"{len(names)} {what}" + (f" ({', '.join(names[:6])}{', ...' if len(names) > 6 else ''})" if names else "")
        for what, names in groups.items()
    ]
    return f"class head, {len(ours) - 1} classes (the weights have {len(theirs) - 1}): {', '.join(parts)}"


def _checkpoint_payload(source: str) -> dict | None:
    """What ``source`` holds when it is a checkpoint of ``ssd train``, else None."""
    payload = read_payload(source)
    return payload if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT else None


def _load_source(source: str) -> tuple[SSD, tuple[str, ...], str]:
    """The detector in ``source`` with its class names and the name to report it by."""
    if detector_by_name(source) is None and Path(source).is_file():
        payload = _checkpoint_payload(source)
        if payload is not None:
            checkpoint = checkpoint_from_payload(payload, source)
            model = build_model(checkpoint.spec.config)
            model.load_state_dict(checkpoint.model_state)
            return model, checkpoint.spec.class_names, Path(source).name
    pretrained = load_pretrained(source)
    model = pretrained.model
    model.config = dataclasses.replace(model.config, resize="antialias")  # trained and run through ssdcli's pipeline
    return model, pretrained.spec.class_names, pretrained.path.name


def start_from_detector(settings: ModelSettings, class_names: tuple[str, ...]) -> tuple[SSD, str]:
    """The detector ``settings.weights`` ready to train on ``class_names`` (index 0 = background), and one line
    saying what was kept.

    ``settings.weights``: a torchvision weights name or state dict file, or a checkpoint of ``ssd train``. The
    architecture, default boxes and input settings are the detector's (torchvision's are resized as ssdcli's
    pipeline does: 8-bit, antialiased). Classes are matched by name: the class head's rows of classes in both sets
    are kept (in the data's order), only classes the detector lacks start afresh; the backbone and box head are
    kept. Another architecture, default boxes or input size asked for alongside is refused.
    """
    if settings.backbone_weights is not None:
        raise UsageError("`weights` loads a whole detector; leave out `backbone_weights`")
    if settings.anchors is not None:
        raise UsageError("`weights`: the detector's default boxes come with its weights; leave out `anchors`")
    model, theirs, name = _load_source(str(settings.weights))
    arch, layout = model.config.arch, model.config.layout
    if settings.arch not in (ModelSettings.arch, arch):
        raise UsageError(f"`arch` {settings.arch}: the weights {name} are for {arch}")
    if settings.img_size is not None and settings.img_size != layout.image_size:
        raise UsageError(
            f"`img_size` {settings.img_size}: {arch} from `weights` takes {layout.image_size} px inputs (its default "
            "boxes are for that size)"
        )
    if tuple(class_names[1:]) == tuple(theirs[1:]):
        return model, f"`weights` {name}: {arch}, every layer kept (the data has the weights' {len(theirs) - 1} classes)"
    rows = class_rows(theirs, class_names)
    model.keep_classes(rows)
    return model, f"`weights` {name}: {arch}, backbone and box head kept; {class_head_line(theirs, class_names, rows)}"
