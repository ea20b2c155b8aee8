"""Rich consoles and the one-line error format shared by every command."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape


def stdout_console() -> Console:
    return Console(highlight=False)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """Print ``error: <message>`` as one line on stderr (long messages are not wrapped)."""
    stderr_console().print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def print_warning(message: str) -> None:
    stderr_console().print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)
