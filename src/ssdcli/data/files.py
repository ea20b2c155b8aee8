"""Files on disk, one way for every command: JSON read with one error policy, files written atomically (never a
half-written file, even on Ctrl-C) with the permissions a plain ``open()`` gives them, existing files replaced only
when asked, output places checked before the work, fresh numbered run folders."""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import stat
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
    text = read_text(path, what)
    if not text.strip():
        raise DataError(f"{what} is empty (no JSON in it)", path=path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}", path=path) from None


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of a UTF-8 file, a leading byte order mark dropped (an encoding mark, not content); a missing or
    unreadable file, or one that is not UTF-8, is a :class:`DataError` naming it (and the first bad byte)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{what} not found", path=path) from None
    except IsADirectoryError:
        raise DataError(f"{what} expected, found a folder", path=path) from None
    except OSError as error:
        raise DataError(f"cannot read {what}: {error.strerror}", path=path) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DataError(
            f"{what} is not UTF-8 text: byte 0x{data[error.start]:02x} on line {line} (save it as UTF-8)", path=path
        ) from None


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


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (``/proc/self/status``); elsewhere set
    and put back at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(path: Path) -> int:
    """The permission bits a plain ``open(path, "w")`` leaves: an existing file's own, else 0o666 less the
    umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~current_umask()


#: Write failures whose cause is the disk, not the file, in words.
_DISK_ERRORS = {errno.ENOSPC: "disk full (no space left on the device)", errno.EDQUOT: "disk quota exceeded"}


def _failed_write(error: BaseException) -> OSError | None:
    """The OSError behind a failed write: ``error`` itself, or the one a writer turned into a RuntimeError
    (``torch.save``'s zip writer reports a stream that failed as "[enforce fail at inline_container.cc]")."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def write_error(error: OSError, path: Path) -> DataError:
    """A write that failed, as one line naming ``path``: a full disk says so."""
    reason = _DISK_ERRORS.get(error.errno or 0) or error.strerror or str(error)
    return DataError(f"cannot write: {reason}", path=path)


def _temporary_beside(path: Path, suffix: str) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as error:
        raise write_error(error, path) from None
    os.close(handle)
    return Path(name)


def _put_in_place(temporary: Path, path: Path) -> None:
    """Give ``temporary`` the mode a plain ``open(path)`` would (mkstemp makes it 0600) and rename it to ``path``."""
    os.chmod(temporary, new_file_mode(path))
    os.replace(temporary, path)


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary file beside ``path`` for the block to write (``suffix`` for writers that go by the file
    name, such as ``.png``); renamed over ``path`` when the block ends, removed if it raises. Readers of ``path``
    see the old file or the new one, never a part. For producers that take long (exports): an interrupt stops
    them and leaves ``path`` as it was. A full disk while the block writes is a :class:`DataError` naming
    ``path``."""
    path = Path(path)
    temporary = _temporary_beside(path, suffix)
    try:
        try:
            yield temporary
        except (OSError, RuntimeError) as error:
            failed = _failed_write(error)
            if failed is not None and failed.errno in _DISK_ERRORS:
                raise write_error(failed, path) from error
            raise
        try:
            _put_in_place(temporary, path)
        except OSError as error:
            raise write_error(error, path) from None
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
    ``.NAME.*.tmp`` that nothing reads. The file gets the mode a plain ``open()`` gives it (the umask's). A path
    that cannot be written, or a disk that fills meanwhile, is a :class:`DataError` naming it."""
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
            _put_in_place(temporary, path)
    except (OSError, RuntimeError) as error:
        failed = _failed_write(error)
        if failed is None:
            raise
        raise write_error(failed, path) from None
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
    _check_can_create(path.parent, path)
    return path


def check_output_folder(path: str | Path) -> Path:
    """``path`` if files can be written in it: an existing folder, or one that can be made, both with write
    permission. Call it before the work whose results go there, so that a refusal costs nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError("exists and is not a folder", path=path)
    _check_can_create(path, path)
    return path


def _check_can_create(folder: Path, target: Path) -> None:
    """A :class:`DataError` naming ``target`` unless ``folder``, or the nearest folder above it that exists (where
    the missing ones would be made), is a folder this process may write in."""
    existing = folder
    try:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        is_folder = existing.is_dir()
    except OSError as error:
        raise DataError(f"cannot write: {error.strerror or error}", path=target) from None
    if not is_folder:
        raise DataError(f"cannot write: {existing} is not a folder", path=target)
    effective = os.access in os.supports_effective_ids
    if not os.access(existing, os.W_OK | os.X_OK, effective_ids=effective):
        raise DataError(f"cannot write: no permission to write in {existing}", path=target)


def fresh_run_dir(base: str | Path, prefix: str = "") -> Path:
    """Create and return ``base/<prefix><n>`` for the smallest n >= 1 not yet taken (safe against races); folders
    get the umask's mode. A base that cannot be written is a :class:`DataError` naming it."""
    root = check_output_folder(base)
    try:
        root.mkdir(parents=True, exist_ok=True)
        taken = [p.name[len(prefix):] for p in root.iterdir() if p.name.startswith(prefix)]
    except OSError as error:
        raise write_error(error, root) from None
    number = max((int(t) for t in taken if t.isdigit()), default=0) + 1
    while True:
        candidate = root / f"{prefix}{number}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            number += 1
        except OSError as error:
            raise write_error(error, root) from None
