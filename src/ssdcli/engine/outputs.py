"""Files a command writes for the user: an existing one is replaced only when asked."""

from __future__ import annotations

from pathlib import Path

from ssdcli.errors import UsageError


def check_new_file(path: str | Path, force: bool = False) -> Path:
    """``path`` if it may be written: refuse an existing file unless ``force``, and any existing folder.

    Call it before the work that produces the file, so that a refusal costs nothing."""
    path = Path(path)
    if path.is_dir():
        raise UsageError("is a folder; give a file name", path=path)
    if path.exists() and not force:
        raise UsageError("exists; pass --force to replace it (or choose another name)", path=path)
    return path
