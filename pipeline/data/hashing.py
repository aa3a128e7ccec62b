"""Content hashes of source images, remembered by (path, size, mtime) so unchanged files are not
re-read on every run, and never trusted when a file could have changed within the clock's tick."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

from pipeline.common.atomic import atomic_write_text
from pipeline.common.files import read_regular_text

# An index entry written less than this long after the file's mtime could miss a same-size rewrite
# in the same timestamp tick (git's "racy clean" problem): such files are hashed again next time.
_RACY_NS = 2_000_000_000


def digest_bytes(data: bytes) -> str:
    """The content hash used for images everywhere (cache keys, fingerprints)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def digest_strings(parts: Iterable[str]) -> str:
    """One sha256 over an ordered list of strings (cache keys, fingerprints). A file name that is
    not UTF-8 on disk (surrogate escapes from os.fsdecode) hashes as its own bytes."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogateescape"))
        h.update(b"\n")
    return h.hexdigest()


class HashIndex:
    """Content hash per file, kept in a JSON file keyed on the absolute path's (size, mtime_ns)."""

    def __init__(self, index_file: Path) -> None:
        self.index_file = index_file
        self.entries: dict[str, list] = {}
        self.dirty = False
        self.reads = 0  # files read and hashed by this object (a test hook, and a log figure)
        try:
            self.entries = json.loads(read_regular_text(index_file))
        except (OSError, ValueError):
            self.entries = {}

    def lookup(self, path: Path) -> str | None:
        """The remembered hash when the file's size and mtime are unchanged, else None."""
        try:
            st = path.stat()
        except OSError:
            return None
        entry = self.entries.get(str(path))
        if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            return entry[2]
        return None

    def remember(self, path: Path, data: bytes) -> str:
        """Hash ``data`` (the bytes just read from ``path``); remember it if the file is settled."""
        digest = digest_bytes(data)
        self.reads += 1
        try:
            st = path.stat()
        except OSError:
            return digest
        if st.st_size == len(data):
            self.note(path, digest, st.st_size, st.st_mtime_ns)
        return digest

    def note(self, path: Path, digest: str, size: int, mtime_ns: int) -> None:
        """Remember ``digest`` for the file of this size and mtime (read and hashed elsewhere,
        by a decode worker), unless the mtime is too recent to trust."""
        if time.time_ns() - mtime_ns > _RACY_NS:
            self.entries[str(path)] = [size, mtime_ns, digest]
            self.dirty = True

    def save(self) -> None:
        """Write the index atomically; concurrent writers lose at most each other's new entries."""
        if self.dirty:
            self.index_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.index_file, json.dumps(self.entries))
            self.dirty = False


def index_file_for(cache_dir: Path, root: Path) -> Path:
    """One index file per dataset root."""
    key = hashlib.sha256(os.fsencode(str(root))).hexdigest()[:16]
    return cache_dir / "hashes" / f"{key}.json"
