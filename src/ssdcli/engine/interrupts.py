"""Ctrl-C while a file is being written: finish the file first, then stop."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def interrupt_after_block() -> Iterator[None]:
    """Hold SIGINT back while the block runs and deliver it (``KeyboardInterrupt``) when the block is done.

    A Ctrl-C inside ``torch.save`` surfaces as a RuntimeError from its writer and leaves a broken file; held back,
    the file is completed and the interrupt then stops the run as usual. Outside the main thread (where signal
    handlers cannot be set) the block runs unchanged."""
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
