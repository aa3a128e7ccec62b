"""Regular files only: opening a FIFO waits for a writer forever and a device streams without end,
so anything that is not a regular file is named by its kind and never opened."""

from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISDIR, "a folder"))


def kind_of(mode: int) -> str | None:
    """None for a regular file, else what it is ('a FIFO (named pipe)', 'a socket', ...)."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def not_regular(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it exists and is not a regular file (a symlink is followed); None
    for a regular file or a missing path. Decided by os.stat, without opening it."""
    try:
        return kind_of(os.stat(path).st_mode)
    except OSError:
        return None


def read_regular_text(path: Path) -> str:
    """``path.read_text()``, or an OSError naming the kind when it is not a regular file."""
    kind = not_regular(path)
    if kind is not None:
        raise OSError(f"{path} is {kind}, not a regular file: not opened")
    return path.read_text()
