"""Scratch files of killed writers: found by the writer named in their name, and removed.

A temp file (``temp_beside``) is named ``.<target>.<host>~<pid>~<start>.<random>.tmp``: the host,
the process id and the process's start time (clock ticks since boot, from /proc), so a reused pid
is not mistaken for the writer. SIGKILL runs no cleanup, so a writer killed mid-way leaves its
preallocated file (a decode scratch array: N x S x S bytes), and every later run would allocate
another beside it. Stale means:

- its writer is on this host and no longer runs (decided without any lock, so always safe), or
- the caller holds the lock that every writer of ``target`` holds while writing (the feature
  cache's entry lock): then no live writer of it can exist, on any host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from pathlib import Path

log = logging.getLogger(__name__)

_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"
_TAG = re.compile(r"^\.(?P<target>.+?)\.(?P<host>[A-Za-z0-9_-]+)~(?P<pid>\d+)~(?P<start>\d*)"
                  r"\.[^.]+\.tmp$")
_SIDE_FILES = ("-journal", "-wal", "-shm")  # SQLite's, beside a scratch database
_UNTAGGED = re.compile(r"^\.(?P<target>.+)\.[^.]+\.tmp$")  # written before names carried a tag


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' when it does not exist or there
    is no /proc): with the pid, it names one process, never a later one given the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat[stat.rfind(")") + 2 :].split()  # after the command name, which may hold spaces
    return fields[19] if len(fields) > 19 else ""


def writer_tag() -> str:
    """This process, as a scratch file's name records it: ``<host>~<pid>~<start>``."""
    pid = os.getpid()
    return f"{_HOST}~{pid}~{_start_time(pid)}"


def _writer_dead(host: str, pid: int, start: str) -> bool:
    if host != _HOST:
        return False  # another machine's process: not known to be dead
    if start:
        return _start_time(pid) != start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_stale(folder: Path, locked: tuple[str, ...] = ()) -> tuple[int, int]:
    """Remove the scratch files in ``folder`` whose writer is dead; those of the targets named in
    ``locked`` go too, whoever wrote them (the caller holds the lock all their writers hold).
    Returns (files removed, bytes freed)."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith(".") and n.endswith(".tmp")]
    except OSError:
        return 0, 0
    removed = freed = 0
    for name in names:
        tagged = _TAG.match(name)
        if tagged:
            target = tagged["target"]
            stale = target in locked or _writer_dead(tagged["host"], int(tagged["pid"]),
                                                      tagged["start"])
        else:
            untagged = _UNTAGGED.match(name)
            stale = untagged is not None and untagged["target"] in locked
        if not stale:
            continue
        for path in (folder / name, *(folder / f"{name}{end}" for end in _SIDE_FILES)):
            with contextlib.suppress(OSError):
                size = path.stat().st_blocks * 512
                path.unlink()
                removed, freed = removed + (path.name == name), freed + size
    if removed:
        log.warning("removed %d scratch file(s) (%.1f MB) that killed writers left in %s",
                    removed, freed / 1e6, folder)
    return removed, freed
