"""Atomic writes: a temp file in the target's folder, then os.replace, so a reader (another trial,
another process building the same cache) sees the old entry or the whole new one, never half."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.common.scratch import writer_tag


@contextlib.contextmanager
def temp_beside(path: Path) -> Iterator[Path]:
    """A unique temp path next to ``path``; removed unless it was moved into place. Its name
    carries its writer (see pipeline.common.scratch), so a writer killed mid-way leaves a file
    the next run can tell is stale."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{writer_tag()}.", suffix=".tmp",
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path`` (created if missing) while the block runs: processes that
    would build the same thing take turns. The kernel drops it when its holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def atomic_write_text(path: Path, text: str) -> None:
    with temp_beside(path) as tmp:
        tmp.write_text(text)
        os.replace(tmp, path)


def atomic_save(path: Path, array: np.ndarray) -> None:
    """``np.save`` published with os.replace (a small array; large ones: atomic_write_npy)."""
    with temp_beside(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, path)


def atomic_write_npz(path: Path, **arrays: np.ndarray) -> None:
    with temp_beside(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)


def atomic_write_npy(
    path: Path, shape: tuple[int, ...], fill: Callable[[np.ndarray], None]
) -> np.memmap:
    """Create a uint8 .npy of ``shape``, let ``fill`` write its rows, publish it, return it mapped.

    The array is written through a memory map, so building a large cache never holds it in RAM.
    """
    with temp_beside(path) as tmp:
        out = open_allocated(tmp, np.uint8, shape)
        fill(out)
        out.flush()
        del out
        os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


def open_allocated(path: Path, dtype: Any, shape: tuple[int, ...]) -> np.memmap:
    """``np.lib.format.open_memmap`` with every block of the file allocated first: on a full
    disk, writing to a sparse memory map kills the process (SIGBUS), while a failed allocation is
    an ordinary OSError (ENOSPC) that names the file."""
    try:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            need = int(np.prod(shape)) * np.dtype(dtype).itemsize
            raise OSError(errno.ENOSPC, f"no space left on the device for {path} "
                          f"({need / 1e6:.1f} MB): free space there or move state_dir") from exc
        raise
    return out
