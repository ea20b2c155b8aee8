"""Typed errors of ssdcli. The engine raises these; only the CLI maps them to messages and exit codes.

Messages name the parameters they are about in backticks (```epochs`: expected at least 1``): ``str()`` gives
the parameter's name (what a notebook user passed), the CLI gives its flag (``--epochs``). The same holds for the
engine's progress messages."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

_PARAMETER = re.compile(r"`([a-z][a-z0-9_]*)`")


def name_parameters(text: str, name: Callable[[str], str] = str) -> str:
    """``text`` with each backticked parameter name replaced by ``name(parameter)``."""
    return _PARAMETER.sub(lambda match: name(match.group(1)), text)


class SsdcliError(Exception):
    """Base error: a message meant for the user, optionally naming the file it is about."""

    exit_code: int = 1

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)

    def render(self, name: Callable[[str], str] = str) -> str:
        """The one-line message, parameters named by ``name`` (their own names by default)."""
        message = name_parameters(self.message, name)
        return f"{self.path}: {message}" if self.path else message

    def __str__(self) -> str:
        return self.render()


class UsageError(SsdcliError):
    """The command was called with options that do not fit together or do not exist."""

    exit_code = 2


class DataError(SsdcliError):
    """Bad input data: a missing or corrupt image, a malformed annotation, an unknown class, an empty set."""

    exit_code = 2


class CheckpointError(SsdcliError):
    """A checkpoint or exported model that is missing, corrupt or from another model."""

    exit_code = 2


class Interrupted(SsdcliError):
    """Ctrl-C stopped the work; the message is the one line that says what was kept and where."""

    exit_code = 130


class TrainingDiverged(SsdcliError):
    """The loss became NaN or infinite; training stopped with the last finite state saved."""

    exit_code = 1


class PeerProcessFailed(SsdcliError):
    """Another process of a distributed run failed (its own error is reported by that process); this one stopped."""

    exit_code = 1
