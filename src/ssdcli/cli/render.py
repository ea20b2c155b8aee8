"""Rich consoles and the one-line error format shared by every command."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape


def stdout_console() -> Console:
    return Console(highlight=False)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def one_line(message: str) -> str:
    """The first line of ``message``, saying where the rest is when there was more (a traceback, a dump)."""
    lines = message.strip().splitlines() or [""]
    return lines[0] if len(lines) == 1 else f"{lines[0].rstrip()} (--debug for details)"


def print_error(message: str) -> None:
    """Print ``error: <message>`` as one line on stderr (long messages are not wrapped, extra lines dropped)."""
    stderr_console().print(f"[bold red]error:[/] {escape(one_line(message))}", soft_wrap=True)


def print_warning(message: str) -> None:
    stderr_console().print(f"[yellow]warning:[/] {escape(one_line(message))}", soft_wrap=True)
