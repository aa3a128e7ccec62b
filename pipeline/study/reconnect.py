"""An Optuna RDB storage that rides out a database server restart: a call that finds its
connection cut (or the server not yet back), or a SQLite file locked by another worker ("database
is locked": nothing of the call was committed), is retried for up to ``WAIT_S`` seconds. Optuna's
RDBStorage has no retries of its own, and SQLAlchemy's pool_pre_ping only replaces connections
that died while idle, not one cut mid-statement."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from optuna.exceptions import StorageInternalError
from optuna.storages import RDBStorage
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError

from pipeline.common.sqlite import locked

log = logging.getLogger(__name__)
WAIT_S = 120.0
# What PostgreSQL (and psycopg) say while a server restarts or when it is gone.
LOST = ("server closed the connection", "terminating connection", "connection refused",
        "could not connect", "connection is closed", "the database system is starting up",
        "the database system is shutting down", "connection timed out", "SSL connection",
        "no connection to the server", "consuming input failed")


def lost_connection(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    text = str(exc)
    return isinstance(exc, DBAPIError) and any(m in text for m in LOST)


def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: RDBStorage, *args: Any, **kwargs: Any) -> Any:
        deadline, delay = time.monotonic() + WAIT_S, 0.25
        while True:
            try:
                return method(self, *args, **kwargs)
            except (DBAPIError, StorageInternalError) as exc:
                lost = lost_connection(exc)
                if not (lost or locked(exc)) or time.monotonic() > deadline:
                    raise
                log.warning("the study storage was %s (%s): retrying %s",
                            "unreachable" if lost else "locked by another worker",
                            str(exc).splitlines()[0][:120], method.__name__)
                if lost:
                    self.engine.dispose()  # every pooled connection may be dead: open new ones
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    return call


class ReconnectingRDBStorage(RDBStorage):
    """RDBStorage whose every public call retries across a lost database connection, and says
    when it finds one lost (the pool's pre-ping replaces an idle one without a word)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        event.listen(self.engine, "handle_error", _say_lost)


def _say_lost(context: Any) -> None:
    """A lost connection, found by a statement or by the pool's pre-ping: one line."""
    if context.is_disconnect:
        log.warning("the study storage lost its database connection (%s): reconnecting",
                    str(context.original_exception).splitlines()[0][:120])


for _name in dir(RDBStorage):
    _attr = getattr(RDBStorage, _name)
    if not _name.startswith("_") and callable(_attr) and not isinstance(_attr, type):
        setattr(ReconnectingRDBStorage, _name, _retrying(_attr))
