"""Engine results of ``ssd encode`` as JSON-able data."""

from __future__ import annotations

import json
import math
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from ssdcli.core.anchors import AnchorLayout

from ssdcli.data.files import write_atomic


def to_jsonable(value: Any) -> Any:
    """Dataclasses become dicts (layouts as ``AnchorLayout.to_dict()``), tuples lists, paths strings, NaN null."""
    if isinstance(value, AnchorLayout):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write ``data`` (already JSON-able or dataclasses) as indented JSON, atomically."""
    text = json.dumps(to_jsonable(data), indent=2) + "\n"
    return write_atomic(path, text.encode())
