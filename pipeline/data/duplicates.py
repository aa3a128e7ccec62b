"""Duplicate images: the same file under several names, and the same radiograph re-encoded,
rescaled or re-windowed (COVID collections hold both). Left alone they leak between splits.

- Exact duplicates share their content hash: the file bytes' hash the decode cache already keeps
  (or the pixels', for generated and array datasets).
- Near-duplicates have difference hashes within ``dataset.near_duplicate_bits`` of each other: the
  working-size image summed over 16 x 17 near-equal areas, one bit per horizontal neighbour pair
  (brighter to the right or not), 256 bits, in integer arithmetic (the same on every machine).
  Hashes are read from the decode cache's arrays (nothing is decoded again) and kept in a file
  beside each array, so a later load reads 32 bytes per image. On the covid-chestxray sample,
  re-encoded, rescaled or re-contrasted copies land 0-10 bits from their original, different
  radiographs 32 or more (at 32-224 px); crops of more than a few percent are not found.

Groups are rows joined by either relation (transitively). With ``dataset.on_duplicate=group`` the
patients of a group are merged (union-find) before the grouped split, so a group never straddles
two splits; rows outside any group keep their own patient, so the split changes only where
duplicates exist.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.common.atomic import atomic_write_text
from pipeline.common.errors import DataError
from pipeline.common.files import read_regular_text
from pipeline.data.dhash import (  # noqa: F401 -- difference_hashes, distances: part of the API
    HASH_BITS,
    MAX_BITS,
    cached_hashes,
    difference_hashes,
    distances,
    near_pairs,
)
from pipeline.data.hashing import digest_bytes, digest_strings
from pipeline.data.layouts import DataWarning, printable, some

DEFAULT_BITS = 10  # re-encoded or rescaled copies: 0-10; different radiographs: ~30 and more
GROUPS_VERSION = 1  # bump when find_groups or the difference hash changes what it finds


class DuplicateImageWarning(DataWarning):
    """Duplicate images sit in different splits, or carry different labels."""


@dataclass(frozen=True)
class DuplicateGroup:
    """Rows holding the same image (two or more)."""

    rows: tuple[int, ...]  # ascending
    exact: bool  # every row has the same content hash
    bits: int  # largest hash distance of the near pairs that joined the group (0: none)

    def kind(self) -> str:
        if self.exact:
            return "same file content"
        if self.bits == 0:
            return "same image hash (re-saved or re-encoded copies)"
        return f"near-duplicate, hashes up to {self.bits} of {HASH_BITS} bits apart"


# --- hashes -----------------------------------------------------------------------------------


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, x):
        parent = self.parent.setdefault(x, x)
        while parent != x:
            grand = self.parent.setdefault(parent, parent)
            self.parent[x] = grand  # path halving
            x, parent = parent, grand
        return x

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the smallest member is the root


def content_digests(images: np.ndarray) -> list[str]:
    """Per-row hash of the pixels: the content of rows that have no source file."""
    return [digest_bytes(np.ascontiguousarray(row).tobytes()) for row in images]


def find_groups(
    content: Sequence[str], hashes: np.ndarray | None, max_bits: int | None
) -> list[DuplicateGroup]:
    """Rows joined by equal content or by hashes at most ``max_bits`` apart (None: content only),
    as groups of two or more, ordered by their first row."""
    uf = _UnionFind()  # holds only rows joined to another: the rest are groups of one
    first: dict[str, int] = {}
    for row, digest in enumerate(content):
        if first.setdefault(digest, row) != row:
            uf.union(first[digest], row)
    pair_bits: list[tuple[int, int, int]] = []
    if hashes is not None and max_bits is not None:
        # Rows with one hash are compared once: copies of an image cost nothing more.
        unique, first_row, inverse = np.unique(hashes, axis=0, return_index=True,
                                               return_inverse=True)
        first_row = first_row.tolist()
        for row, u in enumerate(inverse.ravel().tolist()):
            if first_row[u] != row:
                uf.union(first_row[u], row)
        for ui, uj, d in near_pairs(unique, max_bits).tolist():
            pair_bits.append((first_row[ui], first_row[uj], d))
            uf.union(first_row[ui], first_row[uj])
    members: dict[int, list[int]] = {}
    for row in sorted(uf.parent):
        members.setdefault(uf.find(row), []).append(row)
    widest: dict[int, int] = {}
    for i, _, d in pair_bits:
        root = uf.find(i)
        widest[root] = max(widest.get(root, 0), d)
    groups = []
    for root, rows in sorted(members.items()):
        if len(rows) > 1:
            exact = len({content[r] for r in rows}) == 1
            groups.append(DuplicateGroup(tuple(rows), exact, 0 if exact else widest.get(root, 0)))
    return groups


def merge_patients(patients: np.ndarray, groups: list[DuplicateGroup]) -> np.ndarray:
    """The split groups: patients that share a duplicate image become one (the smallest id);
    every row outside a duplicate group keeps its own patient id."""
    uf = _UnionFind()
    for group in groups:
        ids = sorted({str(patients[r]) for r in group.rows})
        for other in ids[1:]:
            uf.union(ids[0], other)
    if not uf.parent:
        return patients
    return np.asarray([uf.find(p) if p in uf.parent else p for p in patients.tolist()], dtype=str)


def across_splits(groups: list[DuplicateGroup], split: np.ndarray) -> list[DuplicateGroup]:
    """The groups whose rows sit in more than one split."""
    return [g for g in groups if len({str(split[r]) for r in g.rows}) > 1]


def across_patients(groups: list[DuplicateGroup], patients: np.ndarray) -> list[DuplicateGroup]:
    """The groups whose rows belong to more than one patient (a patient's own copies never leak:
    the split keeps a patient's rows together)."""
    return [g for g in groups if len({str(patients[r]) for r in g.rows}) > 1]


def with_other_labels(groups: list[DuplicateGroup], labels: np.ndarray) -> list[DuplicateGroup]:
    return [g for g in groups if len({int(labels[r]) for r in g.rows}) > 1]


def show(groups: list[DuplicateGroup], files: Sequence[str], tag: Sequence[str] | None = None,
         count: int = 3) -> str:
    """The first pair of each of the first ``count`` groups, for a one-line message:
    'a.png (train) = b.png (test)' for the same bytes, '~' for near-duplicates."""
    shown = []
    for group in groups:
        a, b = group.rows[:2]
        names = [printable(files[r]) + (f" ({tag[r]})" if tag is not None else "") for r in (a, b)]
        more = f" (+{len(group.rows) - 2} more)" if len(group.rows) > 2 else ""
        shown.append(f"{names[0]} {'=' if group.exact else '~'} {names[1]}{more}")
    return some(shown, count)


# --- what a dataset config makes of them ------------------------------------------------------


def find_in(rows_images: np.ndarray, images_path: Path | None, content: Sequence[str] | None,
            max_bits: int | None) -> list[DuplicateGroup]:
    """The duplicate groups of a dataset's decoded rows (``content``: per-row file hashes), kept
    beside the cache array they come from: a warm start reads them back."""
    if content is None:
        content = content_digests(rows_images)
    saved = None
    if images_path is not None:
        key = digest_strings([str(max_bits), *content])[:16]
        saved = images_path.with_name(f"{images_path.stem}.groups{GROUPS_VERSION}-{key}.json")
        try:
            return [DuplicateGroup(tuple(rows), bool(exact), int(bits))
                    for rows, exact, bits in json.loads(read_regular_text(saved))]
        except (OSError, ValueError, TypeError):
            pass  # absent or torn: found (and written) again
    hashes = cached_hashes(rows_images, images_path) if max_bits is not None else None
    groups = find_groups(content, hashes, max_bits)
    if saved is not None:
        with contextlib.suppress(OSError):  # a read-only cache only finds them again next time
            atomic_write_text(saved, json.dumps([[g.rows, g.exact, g.bits] for g in groups]))
    return groups


def refuse(groups: list[DuplicateGroup], patients: np.ndarray, files: Sequence[str],
           root: Path | None) -> None:
    """dataset.on_duplicate=error: stop when an image is held by more than one patient."""
    shared = across_patients(groups, patients)
    if shared:
        tags = [f"patient {p}" for p in patients.tolist()]
        raise DataError(
            f"{len(shared)} duplicate image group(s) span more than one patient under "
            f"{printable(str(root))}: {show(shared, files, tags)} ('=' same content, '~' "
            f"near-duplicate): delete the copies or give them one patient id, or set "
            f"dataset.on_duplicate=group to keep each group in one split"
        )


def warn_about(groups: list[DuplicateGroup], policy: str, split: np.ndarray, labels: np.ndarray,
               classes: Sequence[str], files: Sequence[str], root: Path | None) -> None:
    """One warning line for groups left in several splits, one for groups with several labels."""
    where = printable(str(root))
    crossing = across_splits(groups, split)
    if crossing:
        why = (
            "the dataset's given splits put them there, and given splits are kept: delete the "
            "copies or move them into one split"
            if policy == "group"
            else "set dataset.on_duplicate=group to keep each group in one split, or delete the "
            "copies"
        )
        warnings.warn(
            f"{len(crossing)} of {len(groups)} duplicate image group(s) under {where} straddle "
            f"train/val/test: {show(crossing, files, split.tolist())}; {why}",
            DuplicateImageWarning,
            stacklevel=3,
        )
    mixed = with_other_labels(groups, labels)
    if mixed:
        names = [classes[int(i)] for i in labels]
        warnings.warn(
            f"{len(mixed)} duplicate image group(s) under {where} carry different labels: "
            f"{show(mixed, files, names)}; check those labels",
            DuplicateImageWarning,
            stacklevel=3,
        )


def shared_with(images: np.ndarray, reference: np.ndarray, reference_path: Path | None,
                max_bits: int | None) -> np.ndarray:
    """(N,) bool: which ``images`` are also in ``reference`` (another dataset's decoded rows at
    the same size): the same pixels, or joined to a reference row by difference hashes within
    ``max_bits``, as the groups that guard the splits are (None: the same pixels only)."""
    n = len(reference)
    content = content_digests(reference) + content_digests(images)
    hashes = None
    if max_bits is not None:
        hashes = np.concatenate([cached_hashes(reference, reference_path),
                                 difference_hashes(images)])
    out = np.zeros(len(images), dtype=bool)
    for group in find_groups(content, hashes, max_bits):
        rows = np.asarray(group.rows)
        if rows.min() < n:
            out[rows[rows >= n] - n] = True
    return out
