"""Writing a whole data set folder so that a failure leaves nothing behind: into a hidden sibling folder first,
renamed to its place when complete. One helper for ``ssd data synth`` and ``ssd data convert``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from ssdcli.errors import DataError


def write_folder(out: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(folder)`` so that ``out`` gets the folder's content.

    A new or empty ``out`` is filled through a hidden staging folder (``.<name>.partial-<pid>``) renamed to ``out``
    at the end; a non-empty ``out`` (the caller allowed writing into it) is written in place. OS errors become a
    :class:`DataError` naming ``out``.
    """
    fresh = not out.exists() or (out.is_dir() and not any(out.iterdir()))
    target = out.parent / f".{out.name}.partial-{os.getpid()}" if fresh else out
    try:
        target.mkdir(parents=True, exist_ok=not fresh)
        write(target)
        if fresh:
            if out.exists():
                out.rmdir()
            target.rename(out)
    except OSError as error:
        raise DataError(f"cannot write the data set: {error.strerror or error}", path=out) from None
    finally:
        if fresh and target.exists():
            shutil.rmtree(target, ignore_errors=True)
