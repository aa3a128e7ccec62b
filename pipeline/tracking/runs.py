"""A run's life: started with the tags every run carries, ended in the state its work ended in,
and runs a dead process left RUNNING closed. Runs are created and terminated here only."""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pipeline.common.errors import one_line
from pipeline.tracking.schema import (
    CLOSED_WHEN_DEAD,
    RUN_STATUS,
    RUNNING,
    TRAINING_ROLES,
    Role,
    State,
    Status,
    Tag,
    tags_of,
)
from pipeline.tracking.search import where
from pipeline.training.signals import Interrupted

if TYPE_CHECKING:
    from pipeline.tracking.store import Store

log = logging.getLogger(__name__)
MAX_TAG_LENGTH = 5000
# What SQLite and the OS say when a write finds no space (through MLflow or SQLAlchemy).
FULL_DISK = ("database or disk is full", "No space left on device")


class OpenRun:
    """A run open in ``with store.open_run(...)``: its id, and the state it is to end in
    (COMPLETE unless ``end`` names another; when the block raises, the exception decides)."""

    def __init__(self, run_id: str):
        self.id = run_id
        self.state = State.COMPLETE
        self.error: str | None = None
        self.ended = False

    def end(self, state: State, error: str | None = None) -> None:
        self.state, self.error, self.ended = State(state), error, True


def start_run(store: Store, role: Role, parent: str | None = None, name: str | None = None,
              **tags: Any) -> str:
    """A new RUNNING run: the tags every run carries (its process, commit and role), then
    ``tags``. ``open_run`` is how a run is also closed."""
    mine = {Tag.ROLE: Role(role), **tags}
    if parent:
        mine[Tag.PARENT] = parent
    run = store.client.create_run(store.experiment_id, run_name=name,
                                  tags={**store.process_tags, **tags_of(mine)})
    return run.info.run_id


@contextmanager
def open_run(store: Store, role: Role, parent: str | None = None, name: str | None = None, *,
             raised: Mapping[type[BaseException], State] | None = None, **tags: Any
             ) -> Iterator[OpenRun]:
    """A run for the ``with`` block, closed in the state it ended in: COMPLETE (FINISHED) unless
    ``OpenRun.end`` says otherwise; Ctrl-C or SIGTERM INTERRUPTED (KILLED); an exception that
    ``raised`` names in its state (a pruned trial: PRUNED, FINISHED); any other FAIL (FAILED)
    with the exception as its error. Training runs carry the state (and error) as tags too."""
    run = OpenRun(start_run(store, role, parent, name, **tags))
    try:
        yield run
    except BaseException as exc:
        if not run.ended:
            run.end(*ending(exc, raised or {}, store.uri))
        _close(store, role, run)
        raise
    _close(store, role, run)


def ending(exc: BaseException, raised: Mapping[type[BaseException], State], uri: str
           ) -> tuple[State, str | None]:
    """The state a run ends in when its block raised ``exc``, and its error."""
    if isinstance(exc, KeyboardInterrupt | Interrupted):
        return State.INTERRUPTED, str(exc) or None
    for kind, state in raised.items():
        if isinstance(exc, kind):
            return State(state), str(exc) or None
    return State.FAIL, failure_text(exc, uri)


def _close(store: Store, role: Role, run: OpenRun) -> None:
    tags = end_tags(run.state, run.error) if role in TRAINING_ROLES else {}
    try:
        terminate(store, run.id, RUN_STATUS[run.state], tags)
    except Exception as exc:  # noqa: BLE001 -- a store that cannot take the close (full disk)
        if not store_full(exc):
            raise
        log.warning("run %s could not be closed (%s): the next invocation closes it", run.id,
                    one_line(exc))


def end_tags(state: State, error: str | None = None) -> dict[Tag, str]:
    """The state a run ended in, and its error (also as the run's note in the UI)."""
    tags = {Tag.STATE: str(state)}
    if error:
        tags[Tag.ERROR] = error[:MAX_TAG_LENGTH]
        tags[Tag.NOTE] = error[:MAX_TAG_LENGTH]
    return tags


def terminate(store: Store, run_id: str, status: Status, tags: Mapping[Tag, str] | None = None
              ) -> None:
    """The one place a run ends: its closing tags, then its MLflow status."""
    for key, value in (tags or {}).items():
        store.client.set_tag(run_id, str(Tag(key)), str(value))
    store.client.set_terminated(run_id, status=str(Status(status)))


def failure_text(exc: BaseException, uri: str) -> str:
    """The one line a failed run carries: the exception, or for a store that found no space
    the store and what to do (not the SQL statement it was running)."""
    text = f"{type(exc).__name__}: {one_line(exc)}"
    if any(m in text for m in FULL_DISK) and not isinstance(exc, OSError):
        return (f"{type(exc).__name__}: the MLflow store at {uri} could not be written: "
                "database or disk is full (free space there)")
    return text


def store_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that found no space (the store's disk, or any other)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return any(m in str(exc) for m in FULL_DISK)


def process_alive(pid: str) -> bool:
    """Whether a process of this machine with that id still runs (no id given: yes)."""
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def close_dead_runs(store: Store, roles: tuple[Role, ...] = CLOSED_WHEN_DEAD) -> int:
    """Runs of ``roles`` left RUNNING by a process of this machine that died (a kill -9): closed
    KILLED with the reason. (Sweep trials and study runs are the sweep's to close.)"""
    found = list(store.all(where(RUNNING, host=socket.gethostname())))
    closed = 0
    for run in found:
        tags = run.data.tags
        if tags.get(Tag.ROLE) in roles and not process_alive(tags.get(Tag.PID, "")):
            terminate(store, run.info.run_id, Status.KILLED, end_tags(
                State.INTERRUPTED,
                f"its process (pid {tags.get(Tag.PID)}) died before the run ended"))
            closed += 1
    return closed
