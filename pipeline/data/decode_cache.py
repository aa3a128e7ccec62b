"""Decode once: every image is decoded and resized to the working size once, then later epochs,
trials and runs read one memory-mapped uint8 array from ``<state_dir>/cache/``.

Layout under ``<state_dir>/cache/``:

- ``hashes/<root>.json``: content hash per source file, keyed on (path, size, mtime_ns).
- ``decoded/v<version>-s<size>/<key>.npy`` + ``<key>.json``: the stacked (N, S, S) images of one
  ordered list of source contents, and its sidecar (row hashes, undecodable hashes with reasons).
  ``key`` hashes the preprocessing version, the size and the ordered content hashes, so a changed
  file, size or preprocessing is never served stale. Rows already decoded in any earlier array of
  the same version and size are copied from it instead of being decoded again.
- ``arrays/<kind>-<key>.npy`` + ``.npz``: generated or downloaded arrays (synthetic, medmnist).

Every file is published with os.replace (see pipeline.common.atomic); the sidecar is written before
its array, and an array counts as present only when both exist.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
from pipeline.data.hashing import HashIndex, digest_strings, index_file_for
from pipeline.data.images import PREPROCESS_VERSION, UnreadableImage, decode_image, read_bytes

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


def decode_files(paths: list[Path], root: Path, image_size: int, state_dir: Path) -> Decoded:
    """Decode ``paths`` at ``image_size``, through the cache; unreadable files land in ``bad``."""
    cdir = cache_dir(state_dir)
    index = HashIndex(index_file_for(cdir, root))
    hashes: dict[int, str] = {}
    bad: dict[int, str] = {}
    for i, path in enumerate(paths):
        digest = index.lookup(path)
        if digest is None:
            try:
                digest = index.remember(path, read_bytes(path))
            except UnreadableImage as exc:
                bad[i] = exc.reason
                continue
        hashes[i] = digest
    index.save()

    candidates = sorted(hashes)
    key = digest_strings(
        [f"v{PREPROCESS_VERSION}", f"s{image_size}", *(hashes[i] for i in candidates)]
    )[:32]
    folder = cdir / "decoded" / f"v{PREPROCESS_VERSION}-s{image_size}"
    array_path, sidecar_path = folder / f"{key}.npy", folder / f"{key}.json"

    hit = _read_entry(array_path, sidecar_path)
    if hit is not None:
        images, bad_hashes = hit
        kept = [i for i in candidates if hashes[i] not in bad_hashes]
        if len(kept) == len(images):
            bad.update({i: bad_hashes[hashes[i]] for i in candidates if hashes[i] in bad_hashes})
            return Decoded(images, array_path, kept, [hashes[i] for i in kept], bad, 0)

    return _build(paths, candidates, hashes, bad, image_size, folder, array_path, sidecar_path)


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
            side = json.loads(sidecar.read_text())
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
    candidates: list[int],
    hashes: dict[int, str],
    bad: dict[int, str],
    size: int,
    folder: Path,
    array_path: Path,
    sidecar_path: Path,
) -> Decoded:
    reuse, known_bad = _reusable(folder)
    sources: dict[Path, np.ndarray] = {}
    for source in {reuse[hashes[i]][0] for i in candidates if hashes[i] in reuse}:
        try:
            sources[source] = np.load(source, mmap_mode="r")
        except (OSError, ValueError):
            continue  # a torn or foreign file: its rows are decoded again
    reuse = {h: (p, r) for h, (p, r) in reuse.items() if p in sources and r < len(sources[p])}
    to_decode = []
    for i in candidates:
        if hashes[i] in known_bad:
            bad[i] = known_bad[hashes[i]]
        elif hashes[i] not in reuse:
            to_decode.append(i)
    todo = [i for i in candidates if i not in bad]
    if not todo:
        return Decoded(np.zeros((0, size, size), np.uint8), array_path, [], [], bad, 0)

    bad_hashes: dict[str, str] = {}
    with temp_beside(array_path) as scratch:
        shape = (len(todo), size, size)
        full = open_allocated(scratch, np.uint8, shape)
        row_of = {i: r for r, i in enumerate(todo)}
        for i in todo:
            if i not in to_decode:
                src, r = reuse[hashes[i]]
                full[row_of[i]] = sources[src][r]
        for i, result in _decode_many([paths[i] for i in to_decode], size, to_decode):
            if isinstance(result, str):
                bad[i] = result
                bad_hashes[hashes[i]] = result
            else:
                full[row_of[i]] = result
                fault_point("decode")
        kept = [i for i in todo if i not in bad]
        if not kept:
            empty = np.zeros((0, size, size), np.uint8)
            return Decoded(empty, array_path, [], [], bad, len(to_decode))
        kept_hashes = [hashes[i] for i in kept]
        sidecar = {"version": PREPROCESS_VERSION, "size": size, "hashes": kept_hashes}
        sidecar["bad"] = bad_hashes
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
    reused = len(todo) - len(to_decode)
    log.info("decoded %d images at %d px, %d reused from the cache", len(to_decode), size, reused)
    return Decoded(images, array_path, kept, kept_hashes, bad, len(to_decode))


def _decode_many(paths: list[Path], size: int, ids: list[int]):
    """(id, array or reason) in order; threads, since Pillow decodes with the GIL released."""

    def one(path: Path) -> np.ndarray | str:
        try:
            return decode_image(read_bytes(path), size)
        except UnreadableImage as exc:
            return exc.reason

    workers = max(1, min(8, os.cpu_count() or 1))
    if workers == 1 or len(paths) < 4:
        yield from zip(ids, map(one, paths), strict=True)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from zip(ids, pool.map(one, paths), strict=True)


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
    arrays = build()
    images = np.ascontiguousarray(arrays.pop("images"), dtype=np.uint8)
    atomic_write_npz(meta_path, **arrays)

    def fill(out: np.ndarray) -> None:
        out[:] = images

    return atomic_write_npy(array_path, images.shape, fill), array_path, arrays
