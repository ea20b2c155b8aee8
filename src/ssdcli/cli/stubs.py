"""Commands that a later release fills in: they exist, show help, and exit non-zero."""

from __future__ import annotations

from ssdcli.errors import NotImplementedYet


def not_implemented(command: str) -> None:
    raise NotImplementedYet(f"'ssd {command}' is not implemented yet in this release")
