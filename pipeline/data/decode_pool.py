"""The cold scan's work spread over one process per core: files the hash index does not know are
read and hashed; files whose content is decoded nowhere yet are read, hashed and decoded straight
into their row of the scratch array that the decode cache publishes afterwards.

Workers are forked: they start in milliseconds and import nothing, where spawned ones would
import the entry point (seconds and a gigabyte each). They run only Pillow, hashlib and numpy,
never a lock another thread of the parent could have held, and exit when the parent dies (a
kill -9 mid-build leaves no worker behind). Pillow holds the GIL for part of a decode, so
threads alone reach about one core.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.data.hashing import digest_bytes
from pipeline.data.images import UnreadableImage, decode_image, read_file

HASHED = "hashed"  # a hash-only job's outcome
KNOWN = "known"  # the content has a row (or a reason) elsewhere: not decoded
DECODED = "decoded"  # the row was written into the scratch array
MIN_PARALLEL = 256  # fewer files than this: one process (forking costs more than it saves)
_CHUNK = 32  # files per task: frequent progress, little messaging per file
_PROGRESS_AFTER_S = 3.0  # a bar for scans longer than this; short ones print nothing


@dataclass(frozen=True)
class Job:
    position: int  # the file's position in the scan
    path: str
    row: int = -1  # the scratch row to decode it into; -1: read and hash only


@dataclass(frozen=True)
class Outcome:
    position: int
    digest: str | None  # None when the file could not be read
    size: int = -1  # st_size and st_mtime_ns of the bytes hashed, for the hash index
    mtime_ns: int = -1
    result: str = HASHED  # HASHED, DECODED, KNOWN, or why the file was skipped


def decode_workers(value: int | str | None) -> int:
    """``dataset.decode_workers`` (typed by the config schema): a number, or ``auto`` (None) for
    one process per core."""
    if value is None or str(value).lower() == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    return int(value)


def run_jobs(jobs: list[Job], scratch: np.ndarray | None, size: int, skip: frozenset[str],
             workers: int, on_decoded: Callable[[], None] = lambda: None,
             what: str = "decoding") -> Iterator[Outcome]:
    """Every job's outcome (in no particular order). ``scratch``: the memory-mapped array rows
    are decoded into; ``skip``: contents not to decode; ``on_decoded`` runs in this process
    after each batch of rows lands in the scratch array (the decode fault point)."""
    if workers > 1 and len(jobs) >= MIN_PARALLEL and _can_fork():
        scratch_path = None if scratch is None else str(scratch.filename)
        yield from _in_pool(jobs, scratch_path, size, skip, workers, on_decoded, what)
        return
    _State.open(scratch, size, skip)
    try:
        with _progress(len(jobs), what) as progress:
            for job in jobs:
                outcome = _one(job)
                progress.update(1)
                if outcome.result == DECODED:
                    on_decoded()
                yield outcome
    finally:
        _State.close()


def _progress(total: int, what: str) -> tqdm:
    """A bar on stderr (stdout's last line stays the JSON one) with images per second and the
    time left, shown once a scan has taken a few seconds; cleared when it ends."""
    return tqdm(total=total, unit="img", desc=what, file=sys.stderr, delay=_PROGRESS_AFTER_S,
                mininterval=0.5, dynamic_ncols=True, leave=False)


def _in_pool(jobs: list[Job], scratch_path: str | None, size: int, skip: frozenset[str],
             workers: int, on_decoded: Callable[[], None], what: str) -> Iterator[Outcome]:
    chunks = [jobs[s : s + _CHUNK] for s in range(0, len(jobs), _CHUNK)]
    pool = ProcessPoolExecutor(min(workers, len(chunks)),
                               mp_context=multiprocessing.get_context("fork"),
                               initializer=_start_worker,
                               initargs=(scratch_path, size, skip, os.getpid()))
    try:
        # Submitting forks the workers: before the bar starts its monitor thread.
        pending = {pool.submit(_chunk, chunk) for chunk in chunks}
        with _progress(len(jobs), what) as progress:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    outcomes = future.result()
                    progress.update(len(outcomes))
                    if any(o.result == DECODED for o in outcomes):
                        on_decoded()
                    yield from outcomes
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


class _State:
    """What a worker (or this process, for a small scan) writes into."""

    scratch: np.ndarray | None = None
    size = 0
    skip: frozenset[str] = frozenset()

    @classmethod
    def open(cls, scratch: np.ndarray | None, size: int, skip: frozenset[str]) -> None:
        cls.scratch, cls.size, cls.skip = scratch, size, skip

    @classmethod
    def close(cls) -> None:
        cls.scratch, cls.skip = None, frozenset()


def _start_worker(scratch_path: str | None, size: int, skip: frozenset[str], parent: int) -> None:
    # Ctrl-C reaches the whole process group: the parent stops the pool, workers carry on
    # with their chunk instead of printing a traceback each.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    scratch = None if scratch_path is None else np.load(scratch_path, mmap_mode="r+")
    _State.open(scratch, size, skip)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    """A worker whose parent died (kill -9 at the decode fault point) exits too: the pool's
    queue would otherwise keep it waiting forever."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _chunk(jobs: list[Job]) -> list[Outcome]:
    return [_one(job) for job in jobs]


def _one(job: Job) -> Outcome:
    try:
        data, st = read_file(Path(job.path))
    except UnreadableImage as exc:
        return Outcome(job.position, None, result=exc.reason)
    # Hashed again before decoding: a row is filed under the bytes it was decoded from, should
    # the file have changed since it was hashed (hashing costs 1/20 of decoding).
    digest = digest_bytes(data)
    if job.row < 0:
        return Outcome(job.position, digest, st.st_size, st.st_mtime_ns, HASHED)
    if digest in _State.skip:
        return Outcome(job.position, digest, st.st_size, st.st_mtime_ns, KNOWN)
    try:
        _State.scratch[job.row] = decode_image(data, _State.size)
    except UnreadableImage as exc:
        return Outcome(job.position, digest, st.st_size, st.st_mtime_ns, exc.reason)
    return Outcome(job.position, digest, st.st_size, st.st_mtime_ns, DECODED)
