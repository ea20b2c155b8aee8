"""Writing output files of ``ssd encode``: atomically, refusing to overwrite unless asked."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ssdcli.errors import DataError, UsageError


def check_new_file(path: str | Path, force: bool = False) -> Path:
    """``path`` if it may be written: refuse an existing file unless ``force``, and any existing folder."""
    path = Path(path)
    if path.is_dir():
        raise UsageError("is a folder; give a file name", path=path)
    if path.exists() and not force:
        raise UsageError("already exists; pass --force to overwrite it", path=path)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place (parents are created)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise DataError(f"cannot write: {error.strerror or error}", path=path) from None
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise DataError(f"cannot write: {error.strerror or error}", path=path) from None
    return path
