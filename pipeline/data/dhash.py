"""Difference hashes of working-size images: 256 bits each, in integer arithmetic (the same on
every machine), kept beside the decode cache's arrays, compared by Hamming distance in blocks.
Hand-written: no maintained library hashes a memory-mapped uint8 array without decoding it again.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from pipeline.common.atomic import atomic_save

GRID = 16  # 16 rows of 17 area means: 16 x 16 neighbour comparisons
HASH_BITS = GRID * GRID
MAX_BITS = HASH_BITS // 4  # a larger threshold would call unrelated radiographs duplicates
_VERSION = 1  # bump when the hash changes: cached hash files carry it in their name
_CHUNK = 32  # images hashed at a time: their int64 area sums take 8 bytes a pixel, briefly
_BLOCK = 256  # rows per block when comparing within one bucket
_POPCOUNT = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint16)


def _edges(size: int, bins: int) -> np.ndarray:
    """Integer bin starts splitting ``size`` pixels into ``bins`` near-equal runs."""
    return (np.arange(bins) * size) // bins


def _area_sums(images: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel sums over a rows x cols grid of near-equal areas (exact integers, so the hash is the
    same on every machine), and the pixel count of each area. Images smaller than the grid are
    repeated up to it first."""
    size = images.shape[-1]
    if size < cols:
        reps = -(-cols // size)
        images = np.repeat(np.repeat(images, reps, axis=1), reps, axis=2)
        size *= reps
    r, c = _edges(size, rows), _edges(size, cols)
    sums = np.add.reduceat(np.add.reduceat(images, c, axis=2, dtype=np.int64), r, axis=1)
    counts = np.diff(np.append(r, size))[:, None] * np.diff(np.append(c, size))[None, :]
    return sums, counts


def difference_hashes(images: np.ndarray) -> np.ndarray:
    """(N, 32) uint8: the 256-bit difference hash of each (S, S) uint8 image, packed: per row of
    16, whether each of 16 areas is brighter than its left neighbour."""
    out = np.zeros((len(images), HASH_BITS // 8), dtype=np.uint8)
    for start in range(0, len(images), _CHUNK):
        block = np.asarray(images[start : start + _CHUNK])
        sums, counts = _area_sums(block, GRID, GRID + 1)
        # mean right > mean left, compared without division: sum_r * n_l > sum_l * n_r
        bits = sums[:, :, 1:] * counts[:, :-1] > sums[:, :, :-1] * counts[:, 1:]
        out[start : start + len(block)] = np.packbits(bits.reshape(len(block), -1), axis=1)
    return out


def cached_hashes(images: np.ndarray, images_path: Path | None) -> np.ndarray:
    """difference_hashes, kept beside the cache array they come from (which never changes)."""
    if images_path is None:
        return difference_hashes(images)
    path = images_path.with_name(f"{images_path.stem}.dhash{_VERSION}")  # not *.npy: no array
    try:
        hashes = np.load(path)
        if hashes.shape == (len(images), HASH_BITS // 8) and hashes.dtype == np.uint8:
            return hashes
    except (OSError, ValueError):
        pass  # absent or torn: computed (and written) again
    hashes = difference_hashes(images)
    with contextlib.suppress(OSError):  # a read-only cache still works, it hashes again next time
        atomic_save(path, hashes)
    return hashes


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between every packed hash of ``a`` and every one of ``b``."""
    return _POPCOUNT[a[:, None, :] ^ b[None, :, :]].sum(axis=-1)


def near_pairs(hashes: np.ndarray, max_bits: int) -> np.ndarray:
    """(K, 3) int64 rows (i, j, distance), i < j, for every pair at most ``max_bits`` apart.

    Multi-index hashing: split the bits into max_bits + 1 parts; a pair within max_bits agrees
    on at least one part, so only rows sharing a part's value are compared.
    """
    bits = np.unpackbits(hashes, axis=1)
    found = [np.zeros((0, 3), dtype=np.int64)]
    for part in np.array_split(np.arange(HASH_BITS), max_bits + 1):
        keys = np.packbits(bits[:, part], axis=1)
        _, bucket, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        order = np.argsort(bucket.ravel(), kind="stable")  # rows of a bucket together, ascending
        ends = np.cumsum(counts)
        for b in np.flatnonzero(counts > 1):
            found += _close_within(hashes, order[ends[b] - counts[b] : ends[b]], max_bits)
    pairs = np.concatenate(found)
    _, first = np.unique(pairs[:, 0] * len(hashes) + pairs[:, 1], return_index=True)
    return pairs[first]


def _close_within(hashes: np.ndarray, members: np.ndarray, max_bits: int) -> list[np.ndarray]:
    out = []
    for start in range(0, len(members), _BLOCK):
        left, right = members[start : start + _BLOCK], members[start:]
        dist = distances(hashes[left], hashes[right])
        a, b = np.nonzero((dist <= max_bits) & (left[:, None] < right[None, :]))
        out.append(np.stack([left[a], right[b], dist[a, b]], axis=1).astype(np.int64))
    return out


# --- groups -----------------------------------------------------------------------------------
