"""Rich consoles and the one-line error format shared by every command."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from ssdcli.errors import name_parameters


def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        # A log (CI, tee, nohup): every printed line stays one line instead of being wrapped at an assumed 80
        # columns, which splits numbers and paths ("seconds\n4.4624"). Tables keep their layout.
        console.soft_wrap = True
    return console


def stdout_console() -> Console:
    return _console(stderr=False)


def stderr_console() -> Console:
    return _console(stderr=True)


def live_display(console: Console) -> bool:
    """Whether progress bars may be drawn: only where they redraw in place (a terminal or a notebook). In a log
    they would be printed once, truncated, when the work is done."""
    return console.is_interactive or console.is_jupyter


def one_line(message: str) -> str:
    """The first line of ``message``, saying where the rest is when there was more (a traceback, a dump)."""
    lines = message.strip().splitlines() or [""]
    return lines[0] if len(lines) == 1 else f"{lines[0].rstrip()} (--debug for details)"


#: Engine parameters whose flag is not ``--`` + the name with dashes.
FLAG_OF_PARAMETER = {
    "arch": "--model",
    "time_budget": "--time",
    "iou_threshold": "--iou",
    "conf_threshold": "--conf",
    "data_format": "--format",
    "target": "--to",
    "sources": "SOURCES",
    "tile_overlap": "--overlap",
}


def flag(parameter: str) -> str:
    """The command-line flag of an engine parameter (``with_nms`` -> ``--with-nms``)."""
    return FLAG_OF_PARAMETER.get(parameter, "--" + parameter.replace("_", "-"))


def as_flags(text: str) -> str:
    """An engine message with the parameters it names (in backticks) written as flags."""
    return name_parameters(text, flag)


def print_error(message: str) -> None:
    """Print ``error: <message>`` as one line on stderr (long messages are not wrapped, extra lines dropped)."""
    stderr_console().print(f"[bold red]error:[/] {escape(one_line(as_flags(message)))}", soft_wrap=True)


def print_warning(message: str) -> None:
    stderr_console().print(f"[yellow]warning:[/] {escape(one_line(as_flags(message)))}", soft_wrap=True)


class JsonOutput:
    """The ``--json TARGET`` of every command: ``-`` prints the JSON alone on stdout (the command then prints no
    tables), a file name is checked before any work (an existing file is replaced only with ``--force``) and
    written atomically at the end. None: no JSON."""

    def __init__(self, target: str | Path | None, force: bool = False) -> None:
        self.target = None if target is None else str(target)
        if self.target is not None and self.target != "-":
            from ssdcli.data.files import check_new_file

            check_new_file(self.target, force)

    @property
    def to_stdout(self) -> bool:
        return self.target == "-"

    def write(self, payload: Any) -> Path | None:
        """Write ``payload`` (dataclasses, tuples, NaN allowed); the file written, or None."""
        if self.target is None:
            return None
        from ssdcli.data.files import json_text, write_json

        if self.to_stdout:
            sys.stdout.write(json_text(payload))
            sys.stdout.flush()
            return None
        return write_json(self.target, payload)


class EngineWarnings(logging.Handler):
    """Warnings the engine logs outside its events (an exporter falling back, say) as warning lines on stderr.
    Records made from events (:func:`ssdcli.engine.events.log_event`, marked ``ssdcli_event``) are left out: the
    command renders those events itself."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(record, "ssdcli_event", False):
            print_warning(one_line(record.getMessage()))


@contextmanager
def engine_warnings_shown() -> Iterator[None]:
    """While a command runs, the ``ssdcli`` logger's warnings are shown (the library alone logs to no handler)."""
    logger = logging.getLogger("ssdcli")
    handler = EngineWarnings()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
