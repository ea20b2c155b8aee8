"""Writing a whole data set folder so that a failure or an interruption (Ctrl-C) leaves the output as it was: the
files are written into a hidden sibling folder first and moved to their place only when all are written. One
helper for ``ssd data synth`` and ``ssd data convert``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from ssdcli.errors import DataError


def write_folder(out: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(folder)`` so that ``out`` gets the folder's content.

    ``write`` fills a hidden staging folder (``.<name>.partial-<pid>`` beside ``out``). When it returns, a new or
    empty ``out`` becomes the staging folder (a rename); into a non-empty ``out`` (the caller allowed writing into
    it) each staged file is moved, replacing a file of the same name. If ``write`` fails or is interrupted, the
    staging folder and any folders made above ``out`` are removed and ``out`` is left as it was. OS errors become
    a :class:`DataError` naming ``out``.
    """
    fresh = not out.exists() or (out.is_dir() and not any(out.iterdir()))
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    made = _missing_folders(out.parent)
    done = False
    try:
        staging.mkdir(parents=True)
        write(staging)
        if fresh:
            if out.exists():
                out.rmdir()
            staging.rename(out)
        else:
            _move_into(staging, out)
        done = True
    except OSError as error:
        raise DataError(f"cannot write the data set: {error.strerror or error}", path=out) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if not done:
            _remove_empty(made)


def _missing_folders(folder: Path) -> list[Path]:
    """The folders of ``folder``'s path, itself included, that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _move_into(staging: Path, out: Path) -> None:
    """Every file under ``staging`` moved to the same place under ``out`` (folders made, files replaced)."""
    for path in sorted(staging.rglob("*")):  # a folder before what it holds
        target = out / path.relative_to(staging)
        if path.is_dir():
            target.mkdir(exist_ok=True)
        else:
            os.replace(path, target)
