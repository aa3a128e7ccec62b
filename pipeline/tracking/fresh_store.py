"""A local SQLite MLflow store that no client ever sees half made.

MLflow creates a store's tables in place, over several seconds of migrations, in whichever client
opens the file first. Two clients opening a new file at once (a sweep and ``make ui``, another
worker, a script: the setup lock covers only this project's processes on one machine) both migrate
and one, or both, stop with ``table ... already exists``. So a new store is migrated in a scratch
file beside it and published with a hard link, which fails if the name exists: every other client
finds either no file or a complete one. When another client got there first and is still creating
it, this waits for its schema to reach MLflow's head revision, then opens it; what still races
is retried (see pipeline.tracking.store.client).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import time
from pathlib import Path

from pipeline.common.atomic import temp_beside
from pipeline.common.scratch import remove_stale
from pipeline.common.sqlite import prepare, sqlite_file

log = logging.getLogger(__name__)

WAIT_S = 120.0  # at most this long for another client's creation to finish
_IDLE_S = 15.0  # a file unchanged this long is being created by no one
# What a client says when it lost the race to create (or upgrade) the same store's tables.
RACE = ("already exists", "duplicate column", "unique constraint", "database is locked",
        "expected to match one row", "no such table")


def is_sqlite(uri: str) -> bool:
    return sqlite_file(uri) is not None


def lost_race(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is another client's creation getting in the way."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(m in str(current).lower() for m in RACE):
            return True
        current = current.__cause__ or current.__context__
    return False


def ready(uri: str) -> None:
    """A SQLite store at ``uri`` with MLflow's whole schema, WAL where the filesystem allows it;
    nothing for other stores."""
    path = sqlite_file(uri)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _publish_fresh(path)
    _wait_while_created(path)
    prepare(uri)


def _publish_fresh(path: Path) -> None:
    from mlflow.store.db.utils import _initialize_tables  # what SqlAlchemyStore runs on a new db
    from sqlalchemy import create_engine

    remove_stale(path.parent)  # scratch stores of creators killed mid-way
    with temp_beside(path) as scratch:
        engine = create_engine(f"sqlite:///{scratch}")
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(scratch, 0o666 & ~mask)  # as sqlite would have created it, not mkstemp's 0600
        try:
            os.link(scratch, path)  # fails when the name exists: never replaces another's store
        except FileExistsError:
            log.info("%s was created by another client meanwhile: using it", path)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            if not path.exists():  # no hard links on this filesystem: a rename, if still free
                os.replace(scratch, path)


def head_revision() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return str(_get_latest_schema_revision())


def _revision(path: Path) -> str | None:
    """The store's schema revision; '' while it is locked by its creator, None before any."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
        try:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            con.close()
    except sqlite3.OperationalError as exc:
        return "" if "locked" in str(exc) else None
    return str(row[0]) if row else None


def _changed(path: Path) -> float:
    """Seconds since the store (or its journal) last changed."""
    newest = 0
    for name in (path.name, path.name + "-wal", path.name + "-journal"):
        with contextlib.suppress(OSError):
            newest = max(newest, (path.parent / name).stat().st_mtime_ns)
    return time.time() - newest / 1e9


def _wait_while_created(path: Path) -> None:
    """Wait (at most WAIT_S) while another client is visibly creating the store: its schema is
    not at the head revision yet and the file keeps changing. An old store, or one whose creator
    died, is left to MLflow, which upgrades an empty one or says what is wrong."""
    head, deadline = head_revision(), time.monotonic() + WAIT_S
    waited = False
    while _revision(path) != head and _changed(path) < _IDLE_S and time.monotonic() < deadline:
        if not waited:
            log.info("%s is being created by another client: waiting for it", path)
            waited = True
        time.sleep(0.25)
