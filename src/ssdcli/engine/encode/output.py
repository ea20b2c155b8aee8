"""Writing output files of ``ssd encode``: atomically, refusing to overwrite unless asked."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ssdcli.errors import DataError

from ..outputs import check_new_file

__all__ = ["check_new_file", "write_bytes"]


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
