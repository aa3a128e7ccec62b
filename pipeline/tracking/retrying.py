"""An MLflow client whose calls ride out SQLite's "database is locked".

Several workers write to one SQLite store. A lock held longer than the busy timeout, or a WAL
reader's stale snapshot (which SQLite answers at once, without waiting), fails the call with
"database is locked"; MLflow rolls the transaction back, so nothing of it was stored and the call
is repeated, with a growing pause, for up to WAIT_S seconds.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from pipeline.common.sqlite import locked

log = logging.getLogger(__name__)
WAIT_S = 300.0


class RetryingClient:
    """``MlflowClient`` with every method retried on "database is locked"."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        if name == "_client":  # not set yet (a copy being unpickled): no recursion
            raise AttributeError(name)
        attr = getattr(self._client, name)
        if not callable(attr) or name.startswith("_"):
            return attr
        return _retrying(attr)


def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        deadline, delay = time.monotonic() + WAIT_S, 0.1
        while True:
            try:
                return method(*args, **kwargs)
            except Exception as exc:
                if not locked(exc) or time.monotonic() > deadline:
                    raise
                log.warning("the MLflow store is locked by another worker: retrying %s",
                            method.__name__)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    return call
