"""Typed errors of ssdcli. The engine raises these; only the CLI maps them to messages and exit codes."""

from __future__ import annotations

from pathlib import Path


class SsdcliError(Exception):
    """Base error: a message meant for the user, optionally naming the file it is about."""

    exit_code: int = 1

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class UsageError(SsdcliError):
    """The command was called with options that do not fit together or do not exist."""

    exit_code = 2


class DataError(SsdcliError):
    """Bad input data: a missing or corrupt image, a malformed annotation, an unknown class, an empty set."""

    exit_code = 2


class CheckpointError(SsdcliError):
    """A checkpoint or exported model that is missing, corrupt or from another model."""

    exit_code = 2


class TrainingDiverged(SsdcliError):
    """The loss became NaN or infinite; training stopped with the last finite state saved."""

    exit_code = 1


class PeerProcessFailed(SsdcliError):
    """Another process of a distributed run failed (its own error is reported by that process); this one stopped."""

    exit_code = 1
