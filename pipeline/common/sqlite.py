"""SQLite stores shared by several worker processes (the Optuna storage, the MLflow store).

Without help, one writer blocks every reader of the file (rollback journal) and a connection gives
up after sqlite3's 5 s: several workers then stop with "database is locked". So: WAL where the
filesystem allows it (readers no longer wait for a writer; the mode is kept in the file, set once
when the store is opened), a busy timeout on every connection, and "database is locked" treated as
retryable by the callers (a failed statement or COMMIT leaves nothing committed). A filesystem
that refuses WAL (some network or FUSE mounts) keeps the rollback journal and still works.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 120.0
# What SQLite says when another connection holds the lock longer than the busy timeout, or when
# a WAL reader's snapshot went stale under a writer (SQLITE_BUSY_SNAPSHOT: returned at once).
_LOCKED = ("database is locked", "database table is locked")
_hooked = False


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for anything else, or an in-memory database)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 -- not a SQLAlchemy URL: not ours to prepare
        return None
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def prepare(url: str) -> str | None:
    """Put the SQLite file of ``url`` in WAL mode where its filesystem allows it, and give every
    SQLAlchemy connection to SQLite a busy timeout. Returns the journal mode the file is in (None
    when ``url`` is no SQLite file, or the file's folder does not exist)."""
    hook_busy_timeout()
    path = sqlite_file(url)
    if path is None or not path.parent.is_dir():
        return None
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    try:
        mode = str(con.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
        if mode == "wal" and not _second_connection_reads(path):
            mode = str(con.execute("PRAGMA journal_mode=DELETE").fetchone()[0]).lower()
    except sqlite3.DatabaseError as exc:
        log.info("%s keeps its journal mode (WAL refused: %s)", path, exc)
        mode = str(con.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    finally:
        con.close()
    if mode != "wal":
        log.info("%s: the filesystem does not allow WAL; using the %s journal", path, mode)
    return mode


def _second_connection_reads(path: Path) -> bool:
    """WAL needs shared memory beside the file; where the filesystem cannot map it, another
    connection fails to read. Checked once, so such a store falls back instead of breaking."""
    try:
        other = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
        try:
            other.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            other.close()
    except sqlite3.DatabaseError:
        return False
    return True


def hook_busy_timeout() -> None:
    """Every new SQLAlchemy connection to SQLite waits up to BUSY_TIMEOUT_S for a lock. MLflow
    opens its engine itself, with sqlite3's 5 s, which its table creation and migrations use (its
    sessions then set 20 s, after which pipeline.tracking.retrying repeats the call)."""
    global _hooked
    if _hooked:
        return
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    event.listen(Pool, "connect", _set_busy_timeout)
    _hooked = True


def _set_busy_timeout(dbapi_connection: object, _record: object) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")


def locked(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it: Optuna and MLflow wrap the driver's error) is SQLite's
    "database is locked"."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).lower()
        if any(m in text for m in _LOCKED):
            return True
        current = current.__cause__ or current.__context__
    return False
