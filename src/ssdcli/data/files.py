"""Files on disk, one way for every command: JSON read with one error policy, files written atomically (never a
half-written file, even on Ctrl-C), existing files replaced only when asked, fresh numbered run folders."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields, is_dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from ssdcli.errors import DataError, UsageError

#: What :func:`write_atomic` writes: bytes, text (UTF-8), or a function that writes into a binary stream.
Content = bytes | str | Callable[[IO[bytes]], None]


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """Parse a JSON file; a missing, unreadable, empty or malformed file is a :class:`DataError` naming it."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{what} expected, found a folder", path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{what} not found", path=path) from None
    except UnicodeDecodeError:
        raise DataError(f"malformed JSON: not UTF-8 text ({what})", path=path) from None
    except OSError as error:
        raise DataError(f"cannot read {what}: {error.strerror}", path=path) from None
    if not text.strip():
        raise DataError(f"{what} is empty (no JSON in it)", path=path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}", path=path) from None


def to_jsonable(value: Any) -> Any:
    """``value`` as data ``json`` writes: objects with ``to_dict()`` through it, dataclasses as dicts, tuples as
    lists, paths as strings, NaN and infinities as null (JSON has none)."""
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return to_jsonable(value.to_dict())
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(payload: Any) -> str:
    """``payload`` as indented JSON text (see :func:`to_jsonable`), ending with a newline."""
    return json.dumps(to_jsonable(payload), indent=2, allow_nan=False) + "\n"


def write_json(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON, atomically; a path that cannot be written is a :class:`DataError`."""
    return write_atomic(path, json_text(payload))


@contextmanager
def sigint_held_back() -> Iterator[None]:
    """Hold SIGINT back while the block runs and deliver it (``KeyboardInterrupt``) when the block is done.

    A Ctrl-C inside ``torch.save`` surfaces as a RuntimeError from its writer and leaves a broken file; held back,
    the file is completed and the interrupt then goes on as usual. Outside the main thread (where signal handlers
    cannot be set) the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt


def _temporary_beside(path: Path, suffix: str) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as error:
        raise DataError(f"cannot write: {error.strerror or error}", path=path) from None
    os.close(handle)
    return Path(name)


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary file beside ``path`` for the block to write (``suffix`` for writers that go by the file
    name, such as ``.png``); renamed over ``path`` when the block ends, removed if it raises. Readers of ``path``
    see the old file or the new one, never a part. For producers that take long (exports): an interrupt stops
    them and leaves ``path`` as it was."""
    path = Path(path)
    temporary = _temporary_beside(path, suffix)
    try:
        yield temporary
        try:
            os.replace(temporary, path)
        except OSError as error:
            raise DataError(f"cannot write: {error.strerror or error}", path=path) from None
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def scratch_folder(path: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``path`` (same file system) for intermediate files; removed with its contents."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = tempfile.TemporaryDirectory(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise DataError(f"cannot write: {error.strerror or error}", path=path) from None
    with folder as name:
        yield Path(name)


def write_atomic(path: str | Path, content: Content) -> Path:
    """Write ``content`` to a temporary file beside ``path`` (synced to disk), then rename it into place.

    A Ctrl-C meanwhile is held back until the file is in place; a SIGKILL leaves the previous file and a stray
    ``.NAME.*.tmp`` that nothing reads. A path that cannot be written is a :class:`DataError` naming it."""
    path = Path(path)
    temporary = _temporary_beside(path, ".tmp")
    try:
        with sigint_held_back():
            with temporary.open("wb") as stream:
                if isinstance(content, bytes):
                    stream.write(content)
                elif isinstance(content, str):
                    stream.write(content.encode("utf-8"))
                else:
                    content(stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
    except OSError as error:
        raise DataError(f"cannot write: {error.strerror or error}", path=path) from None
    finally:
        temporary.unlink(missing_ok=True)
    return path


def check_new_file(path: str | Path, force: bool = False) -> Path:
    """``path`` if it may be written: refuse an existing file unless ``force``, and any existing folder.

    Call it before the work that produces the file, so that a refusal costs nothing."""
    path = Path(path)
    if path.is_dir():
        raise UsageError("is a folder; give a file name", path=path)
    if path.exists() and not force:
        raise UsageError("exists; pass `force` to replace it (or choose another name)", path=path)
    return path


def fresh_run_dir(base: str | Path, prefix: str = "") -> Path:
    """Create and return ``base/<prefix><n>`` for the smallest n >= 1 not yet taken (safe against races)."""
    root = Path(base)
    if root.exists() and not root.is_dir():
        raise UsageError("exists and is not a folder", path=root)
    root.mkdir(parents=True, exist_ok=True)
    taken = [p.name[len(prefix):] for p in root.iterdir() if p.name.startswith(prefix)]
    number = max((int(t) for t in taken if t.isascii() and t.isdigit()), default=0) + 1
    while True:
        candidate = root / f"{prefix}{number}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            number += 1


def remove_if_empty(folder: str | Path | None) -> bool:
    """Remove ``folder`` if it exists and holds nothing (a run folder this run made and wrote nothing into);
    whether it was removed."""
    if folder is None:
        return False
    try:
        Path(folder).rmdir()
    except OSError:  # not empty, already gone, or not ours to remove
        return False
    return True


@contextmanager
def removed_on_interrupt(folder: str | Path) -> Iterator[None]:
    """For a folder the caller has just made: Ctrl-C in the block removes it with whatever the block wrote into
    it, then goes on (``KeyboardInterrupt``), so that an interrupted start leaves no half-made run folder."""
    try:
        yield
    except KeyboardInterrupt:
        with sigint_held_back():
            shutil.rmtree(folder, ignore_errors=True)
        raise
