"""Durations on the command line: ``90s``, ``20m``, ``1.5h`` (a bare number is seconds)."""

from __future__ import annotations

import re

from ssdcli.errors import UsageError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*$", re.IGNORECASE)


def parse_duration(text: str, option: str = "--time") -> float:
    """Seconds of ``text``: a positive number with an optional unit s, m or h; UsageError naming ``option``."""
    match = _PATTERN.match(text)
    seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()] if match else 0.0
    if seconds <= 0:
        raise UsageError(f"{option}: expected a duration such as 90s, 20m or 1.5h, got {text!r}")
    return seconds
