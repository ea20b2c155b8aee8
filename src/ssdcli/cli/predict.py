"""`ssd predict`."""

from __future__ import annotations

from .stubs import not_implemented


def predict_command() -> None:
    """Not implemented yet in this release."""
    not_implemented("predict")
