"""SIGINT/SIGTERM as an exception every stage lets through: a run ends KILLED, never half-done."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Interrupted(BaseException):
    """SIGINT/SIGTERM during a training: not an Exception, so nothing on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


@contextmanager
def graceful_interrupts() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into ``Interrupted`` (Lightning would turn Ctrl-C into sys.exit)."""

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    try:
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
