"""Signals during training: stop at a step boundary (:class:`StopRequests`). Files being written finish first
(:func:`ssdcli.data.files.write_atomic`)."""

from __future__ import annotations

import signal
import threading
from types import FrameType

#: Exit codes of a run stopped by a signal: 128 + the signal number, as shells report them.
SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopRequests:
    """SIGINT (Ctrl-C) and SIGTERM (schedulers, ``docker stop``) as a flag that training checks at step boundaries,
    instead of an exception that may land anywhere (inside a step, a DataLoader, a checkpoint write).

    Use as a context manager around training: the handlers are installed on entry and the previous ones put back
    on exit. ``signal`` is the first signal received, None while none was. A second Ctrl-C while the first is
    being handled stops at once (the previous handler, normally ``KeyboardInterrupt``). Outside the main thread
    nothing is installed and nothing is ever requested.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = self.signal or signum

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNAL_EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous.clear()
