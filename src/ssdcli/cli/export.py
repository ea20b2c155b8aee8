"""`ssd export`."""

from __future__ import annotations

from .stubs import not_implemented


def export_command() -> None:
    """Not implemented yet in this release."""
    not_implemented("export")
