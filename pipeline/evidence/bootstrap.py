"""Patient-level bootstrap: patients resampled with all their images, and percentile intervals.

Written here: no maintained library in our dependencies resamples by patient (group).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


def patient_groups(patients: Sequence[str]) -> list[np.ndarray]:
    """Row indices of each patient, in order of first appearance."""
    index: dict[str, list[int]] = {}
    for row, patient in enumerate(patients):
        index.setdefault(str(patient), []).append(row)
    return [np.asarray(rows, dtype=np.int64) for rows in index.values()]


def resamples(groups: list[np.ndarray], replicates: int, seed: int) -> list[np.ndarray]:
    """``replicates`` bootstrap samples of rows: patients drawn with replacement, each bringing
    all of its images."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(groups), size=(replicates, len(groups)))
    return [np.concatenate([groups[g] for g in draw]) for draw in draws]


def interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of the finite bootstrap values (NaN, NaN when there are none)."""
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    if not len(arr):
        return (np.nan, np.nan)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(arr, [tail, 100 - tail])
    return float(low), float(high)


@dataclass
class Uncertain:
    """A model's test metrics, each with its 95% patient-bootstrap interval."""

    values: dict[str, float]
    intervals: dict[str, tuple[float, float]]


def bootstrap(probs: np.ndarray, target: np.ndarray, samples: list[np.ndarray],
              score: Callable[[np.ndarray, np.ndarray], dict[str, float]]) -> Uncertain:
    """``score`` on the whole test set and on every resample; percentile intervals."""
    values = score(probs, target)
    draws = [score(probs[rows], target[rows]) for rows in samples]
    return Uncertain(values, {k: interval([d[k] for d in draws]) for k in values})
