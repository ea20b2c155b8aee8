"""`ssd data`: generate and check data sets."""

from __future__ import annotations

import typer

from .stubs import not_implemented

app = typer.Typer(help="Generate the built-in synthetic data set and check data sets.", no_args_is_help=True)


@app.command("synth")
def synth_command() -> None:
    """Not implemented yet in this release."""
    not_implemented("data synth")


@app.command("check")
def check_command() -> None:
    """Not implemented yet in this release."""
    not_implemented("data check")
