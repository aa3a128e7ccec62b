"""Decode once: every image is decoded and resized to the working size once, then later epochs,
trials and runs read one memory-mapped uint8 array from ``<state_dir>/cache/``.

Layout under ``<state_dir>/cache/``:

- ``hashes/<root>.json``: content hash per source file, keyed on (path, size, mtime_ns).
- ``decoded/v<version>-s<size>/<key>.npy`` + ``<key>.json``: the stacked (N, S, S) images of one
  ordered list of source contents, and its sidecar (row hashes, undecodable hashes with reasons).
  ``key`` hashes the preprocessing version, the size and the ordered content hashes, so a changed
  file, size or preprocessing is never served stale. Rows already decoded in any earlier array of
  the same version and size are copied from it instead of being decoded again. Beside each
  array: its difference hashes (``.dhash*``) and duplicate groups (``.groups*``), see duplicates.
- ``arrays/<kind>-<key>.npy`` + ``.npz``: generated or downloaded arrays (synthetic, medmnist).
- ``splits/<key>.npy``: splits already computed (pipeline.data.split_cache).

Every file is published with os.replace (see pipeline.common.atomic); the sidecar is written before
its array, and an array counts as present only when both exist. Scratch files that killed writers
left are removed before a build allocates its own (pipeline.common.scratch).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.common.atomic import (
    atomic_write_npy,
    atomic_write_npz,
    atomic_write_text,
    open_allocated,
    temp_beside,
)
from pipeline.common.faults import fault_point
from pipeline.common.files import read_regular_text
from pipeline.common.scratch import remove_stale
from pipeline.data.decode_pool import DECODED, KNOWN, Job, run_jobs
from pipeline.data.hashing import HashIndex, digest_strings, index_file_for
from pipeline.data.images import PREPROCESS_VERSION

log = logging.getLogger(__name__)

_COPY_CHUNK = 1024


def cache_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "cache"


@dataclass
class Decoded:
    """The decoded rows of a list of candidate files."""

    images: np.ndarray  # (len(kept), S, S) uint8, memory-mapped
    images_path: Path
    kept: list[int]  # candidate positions that decoded, in order: row r is candidate kept[r]
    hashes: list[str]  # content hash of each kept row
    bad: dict[int, str]  # candidate position -> why it was skipped
    decoded: int  # images actually decoded by this call (0 on a cache hit)


def decode_files(paths: list[Path], root: Path, image_size: int, state_dir: Path,
                 workers: int = 1) -> Decoded:
    """Decode ``paths`` at ``image_size``, through the cache; unreadable files land in ``bad``.

    A warm scan stats the files and reads none: the hash index gives each unchanged file's
    content hash, and the hashes name the cache entry. Files it does not know are hashed, and
    contents decoded nowhere yet decoded, by ``workers`` processes (see decode_pool).
    """
    cdir = cache_dir(state_dir)
    remove_stale(cdir / "hashes")
    index = HashIndex(index_file_for(cdir, root))
    hashes: dict[int, str] = {}
    for i, path in enumerate(paths):
        digest = index.lookup(path)
        if digest is not None:
            hashes[i] = digest
    bad: dict[int, str] = {}
    unknown = [Job(i, str(paths[i])) for i in range(len(paths)) if i not in hashes]
    for o in run_jobs(unknown, None, image_size, frozenset(), workers, what="hashing"):
        if o.digest is None:
            bad[o.position] = o.result
        else:
            hashes[o.position] = o.digest
            index.note(paths[o.position], o.digest, o.size, o.mtime_ns)
    index.save()

    folder = cdir / "decoded" / f"v{PREPROCESS_VERSION}-s{image_size}"
    hit = _hit(hashes, bad, image_size, folder)
    if hit is not None:
        return hit
    return _build(paths, hashes, bad, image_size, folder, workers)


def _entry_paths(hashes: dict[int, str], size: int, folder: Path) -> tuple[Path, Path]:
    """The array and sidecar of these contents: keyed on the version, the size and the ordered
    content hashes."""
    key = digest_strings(
        [f"v{PREPROCESS_VERSION}", f"s{size}", *(hashes[i] for i in sorted(hashes))]
    )[:32]
    return folder / f"{key}.npy", folder / f"{key}.json"


def _hit(hashes: dict[int, str], bad: dict[int, str], size: int, folder: Path) -> Decoded | None:
    array_path, sidecar_path = _entry_paths(hashes, size, folder)
    entry = _read_entry(array_path, sidecar_path)
    if entry is None:
        return None
    images, bad_hashes = entry
    candidates = sorted(hashes)
    kept = [i for i in candidates if hashes[i] not in bad_hashes]
    if len(kept) != len(images):
        return None
    bad.update({i: bad_hashes[hashes[i]] for i in candidates if hashes[i] in bad_hashes})
    return Decoded(images, array_path, kept, [hashes[i] for i in kept], bad, 0)


def _read_entry(array_path: Path, sidecar_path: Path) -> tuple[np.ndarray, dict[str, str]] | None:
    if not (array_path.is_file() and sidecar_path.is_file()):
        return None
    try:
        side = json.loads(sidecar_path.read_text())
        return np.load(array_path, mmap_mode="r"), dict(side["bad"])
    except (OSError, ValueError, KeyError):
        return None  # unreadable entry: rebuilt (and replaced) below


def _reusable(folder: Path) -> tuple[dict[str, tuple[Path, int]], dict[str, str]]:
    """Rows (and known-bad contents) of every earlier array of this version and size."""
    rows: dict[str, tuple[Path, int]] = {}
    bad: dict[str, str] = {}
    if not folder.is_dir():
        return rows, bad
    for sidecar in folder.glob("*.json"):
        array_path = sidecar.with_suffix(".npy")
        try:
            side = json.loads(read_regular_text(sidecar))
        except (OSError, ValueError):
            continue
        if not array_path.is_file():
            continue
        for r, digest in enumerate(side.get("hashes", [])):
            rows.setdefault(digest, (array_path, r))
        bad.update(side.get("bad", {}))
    return rows, bad


def _build(
    paths: list[Path],
    hashes: dict[int, str],
    bad: dict[int, str],
    size: int,
    folder: Path,
    workers: int,
) -> Decoded:
    remove_stale(folder)  # scratch arrays of killed builds: freed before allocating another
    reuse, known_bad = _reusable(folder)
    sources: dict[Path, np.ndarray] = {}
    for source in {reuse[h][0] for h in hashes.values() if h in reuse}:
        try:
            sources[source] = np.load(source, mmap_mode="r")
        except (OSError, ValueError):
            continue  # a torn or foreign file: its rows are decoded again
    reuse = {h: (p, r) for h, (p, r) in reuse.items() if p in sources and r < len(sources[p])}
    bad_hashes: dict[str, str] = {}  # contents that do not decode, for the sidecar
    for i, digest in hashes.items():
        if digest in known_bad:
            bad[i] = bad_hashes[digest] = known_bad[digest]
    todo = [i for i in sorted(hashes) if i not in bad]
    if not todo:
        array_path = _entry_paths(hashes, size, folder)[0]
        return Decoded(np.zeros((0, size, size), np.uint8), array_path, [], [], bad, 0)

    row_of = {i: r for r, i in enumerate(todo)}
    jobs = [Job(i, str(paths[i]), row_of[i]) for i in todo if hashes[i] not in reuse]
    decoded: set[int] = set()
    with temp_beside(folder / "scan.npy") as scratch:
        full = open_allocated(scratch, np.uint8, (len(todo), size, size))
        skip = frozenset(reuse) | frozenset(known_bad)
        for o in run_jobs(jobs, full, size, skip, workers, lambda: fault_point("decode")):
            if o.digest is None:  # gone or unreadable since it was hashed
                bad[o.position] = o.result
                del hashes[o.position]
                continue
            hashes[o.position] = o.digest  # the bytes decoded (changed since hashing, rarely)
            if o.result == DECODED:
                decoded.add(o.position)
            elif o.result != KNOWN:
                bad[o.position] = bad_hashes[o.digest] = o.result
        for i in todo:
            if i in decoded or i in bad:
                continue
            digest = hashes[i]
            if digest in known_bad:  # changed into a known undecodable content meanwhile
                bad[i] = bad_hashes[digest] = known_bad[digest]
            else:
                src, r = reuse[digest]
                full[row_of[i]] = sources[src][r]
        kept = [i for i in todo if i not in bad]
        array_path, sidecar_path = _entry_paths(hashes, size, folder)
        if not kept:
            return Decoded(np.zeros((0, size, size), np.uint8), array_path, [], [], bad,
                           len(decoded))
        kept_hashes = [hashes[i] for i in kept]
        sidecar = {"version": PREPROCESS_VERSION, "size": size, "hashes": kept_hashes,
                   "bad": bad_hashes}
        atomic_write_text(sidecar_path, json.dumps(sidecar))
        if len(kept) == len(todo):
            full.flush()
            del full
            os.replace(scratch, array_path)
            images = np.load(array_path, mmap_mode="r")
        else:
            rows = [row_of[i] for i in kept]

            def fill(out: np.ndarray) -> None:
                for s in range(0, len(rows), _COPY_CHUNK):
                    out[s : s + _COPY_CHUNK] = full[rows[s : s + _COPY_CHUNK]]

            images = atomic_write_npy(array_path, (len(kept), size, size), fill)
            del full
    log.info("decoded %d images at %d px, %d reused from the cache", len(decoded), size,
             len(kept) - len(decoded))
    return Decoded(images, array_path, kept, kept_hashes, bad, len(decoded))


def cached_arrays(
    state_dir: Path, kind: str, key: str, build: Callable[[], dict[str, np.ndarray]]
) -> tuple[np.ndarray, Path, dict[str, np.ndarray]]:
    """Arrays made by ``build`` (``images`` plus metadata), cached under ``key``.

    Returns the memory-mapped images, their file, and the other arrays. Used for generated and
    downloaded datasets, so they too are made once and memory-mapped.
    """
    folder = cache_dir(state_dir) / "arrays"
    array_path, meta_path = folder / f"{kind}-{key}.npy", folder / f"{kind}-{key}.npz"
    if array_path.is_file() and meta_path.is_file():
        try:
            with np.load(meta_path, allow_pickle=False) as meta:
                extra = {k: meta[k] for k in meta.files}
            return np.load(array_path, mmap_mode="r"), array_path, extra
        except (OSError, ValueError):
            pass  # unreadable entry: rebuilt below
    remove_stale(folder)
    arrays = build()
    images = np.ascontiguousarray(arrays.pop("images"), dtype=np.uint8)
    atomic_write_npz(meta_path, **arrays)

    def fill(out: np.ndarray) -> None:
        out[:] = images

    return atomic_write_npy(array_path, images.shape, fill), array_path, arrays
