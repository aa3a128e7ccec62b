"""The split kept on disk: the same split assign_splits computes, read back on the next call,
computed again for any other input, never cached when it fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.common.errors import DataError
from pipeline.data import split_cache
from pipeline.data.splits import assign_splits


def cohort(n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(n) % 2
    groups = np.array([f"p{i // 2:03d}" for i in range(n)])  # two images per patient
    return labels, groups


def test_split_is_cached_and_read_back(state_dir: Path, monkeypatch) -> None:
    labels, groups = cohort()
    args = (labels, groups, ["a", "b"], 0.2, 0.2, 7)
    first = split_cache.cached_splits(state_dir, *args)
    assert np.array_equal(first, assign_splits(*args)) and first.dtype == assign_splits(*args).dtype
    assert len(list((state_dir / "cache" / "splits").glob("*.npy"))) == 1

    def no_split(*args):
        raise AssertionError("split again instead of reading the cached split")

    monkeypatch.setattr(split_cache, "assign_splits", no_split)
    again = split_cache.cached_splits(state_dir, *args)
    assert np.array_equal(again, first) and again.dtype == first.dtype
    for other in [(labels, groups, ["a", "b"], 0.2, 0.2, 8),  # another seed
                  (labels, np.roll(groups, 2), ["a", "b"], 0.2, 0.2, 7),  # other patients
                  (labels, groups, ["a", "b"], 0.2, 0.2, 7, np.full(len(labels), "train"))]:
        with pytest.raises(AssertionError, match="split again"):
            split_cache.cached_splits(state_dir, *other)


def test_a_split_that_fails_is_not_cached(state_dir: Path) -> None:
    labels, groups = np.array([0, 0, 0, 1]), np.array(["p0", "p1", "p2", "p3"])
    for _ in range(2):
        with pytest.raises(DataError, match="too few"):
            split_cache.cached_splits(state_dir, labels, groups, ["a", "b"], 0.2, 0.2, 7)
    assert not (state_dir / "cache" / "splits").exists()
