"""Where ``ssd encode`` takes its anchor layout from: a built-in name, a model architecture, a file or a checkpoint."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from ssdcli.config import ModelSettings
from ssdcli.core.layouts import BUILTIN_LAYOUTS, AnchorLayout
from ssdcli.data.files import read_json
from ssdcli.errors import DataError, UsageError

#: The layout of the model `ssd train` trains by default, so that a coverage report describes that model.
DEFAULT_LAYOUT = ModelSettings.arch


@dataclass(frozen=True)
class NamedLayout:
    """An anchor layout and a short description of where it came from (shown in reports)."""

    name: str
    layout: AnchorLayout


def _arch_layouts() -> dict[str, AnchorLayout]:
    """Model architecture name -> default layout (empty while the models package is not installed)."""
    try:
        from ssdcli.models.zoo import ARCHITECTURES
    except ImportError:
        return {}
    return {name: entry.layout for name, entry in ARCHITECTURES.items()}


def known_layout_names() -> tuple[str, ...]:
    """Built-in layout names, then model architecture names."""
    return tuple(dict.fromkeys([*BUILTIN_LAYOUTS, *_arch_layouts()]))


def layout_by_name(name: str) -> NamedLayout:
    """A built-in layout (``ssd300``...) or a model architecture's layout (``ssd300_vgg16``...).

    Raises :class:`UsageError` suggesting the closest known name.
    """
    if name in BUILTIN_LAYOUTS:
        return NamedLayout(name, BUILTIN_LAYOUTS[name])
    archs = _arch_layouts()
    if name in archs:
        return NamedLayout(name, archs[name])
    names = known_layout_names()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.4)
    hint = f"; did you mean {close[0]!r}?" if close else f"; choose from {', '.join(names)}"
    raise UsageError(f"`model`: unknown model or anchor layout {name!r}{hint}")


def layout_from_checkpoint(path: Path) -> NamedLayout:
    """The anchor layout stored in a checkpoint's model config (read with the checkpoint, which must be valid)."""
    from ssdcli.engine.checkpoint import load_checkpoint

    spec = load_checkpoint(path).spec
    return NamedLayout(f"{spec.arch} ({Path(path).name})", spec.layout)


def layout_from_file(path: Path) -> NamedLayout:
    """An anchor layout JSON (``AnchorLayout.to_dict()``), read as ``ssd train --anchors`` reads it."""
    return NamedLayout(Path(path).name, load_layout_file(Path(path)))


def resolve_layout(model: str | None = None, anchors: Path | None = None, checkpoint: Path | None = None) -> NamedLayout:
    """The layout chosen by at most one of ``model`` / ``anchors`` / ``checkpoint`` (default: that of `ssd train`'s default model)."""
    given = [name for name, value in (("`model`", model), ("`anchors`", anchors), ("`checkpoint`", checkpoint)) if value]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} both choose the anchor layout; pass only one")
    if anchors is not None:
        return layout_from_file(anchors)
    if checkpoint is not None:
        return layout_from_checkpoint(checkpoint)
    return layout_by_name(model or DEFAULT_LAYOUT)


def load_layout_file(path: Path) -> AnchorLayout:
    """An anchor layout JSON (as ``ssd encode --suggest`` writes); DataError naming the file if it is bad."""
    data = read_json(path, "anchor layout file")
    try:
        return AnchorLayout.from_dict(data)
    except (ValueError, AttributeError, TypeError, KeyError) as error:
        raise DataError(f"not an anchor layout: {error}", path=path) from None
