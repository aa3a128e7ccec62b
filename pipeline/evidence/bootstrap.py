"""Patient-level bootstrap: patients resampled with all their images, stratified so that no
replicate lacks a class, and percentile intervals.

A replicate is a weight per test row: how often its patient was drawn. Patients are stratified
by the set of classes among their images (a patient with only covid images, one with only
non-covid ones, one with both): each stratum keeps its number of patients in every replicate, so
every class of the test set is in every replicate. Written here: no maintained library in our
dependencies resamples by patient (group) within strata.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.evidence.metrics import (
    METRICS,
    scores,
    weighted_auroc_of,
    weighted_class_scores,
    weighted_scores,
)

LEVEL = 0.95


@dataclass
class Resamples:
    """``counts[r, p]``: how often patient p is drawn in replicate r; ``rows[i]``: the patient of
    test row i. ``unit``: what was resampled (patient, or image when there are no patient ids)."""

    counts: np.ndarray  # (R, P) int
    rows: np.ndarray  # (N,) int
    unit: str = "patient"
    strata: int = 1

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def weights(self) -> np.ndarray:
        """(R, N): each row's weight in each replicate."""
        return self.counts[:, self.rows].astype(np.float64)

    def chunks(self, size: int = 256):
        """The weights, ``size`` replicates at a time (a large test set times 2000 replicates
        would not fit in memory at once)."""
        for begin in range(0, len(self.counts), size):
            yield self.counts[begin : begin + size][:, self.rows].astype(np.float64)

    def indices(self, replicate: int) -> np.ndarray:
        """The rows of one replicate, repeated as drawn (to check against a plain recomputation)."""
        return np.repeat(np.arange(len(self.rows)), self.counts[replicate, self.rows])


def resample(patients: Sequence[str], target: Sequence[int], replicates: int, seed: int,
             unit: str = "patient") -> Resamples:
    """``replicates`` stratified patient bootstrap replicates of these test rows (seeded)."""
    codes = np.unique(np.asarray([str(p) for p in patients]), return_inverse=True)[1].ravel()
    target = np.asarray(target)
    n_patients = int(codes.max()) + 1 if len(codes) else 0
    classes = [frozenset() for _ in range(n_patients)]
    for patient, label in zip(codes.tolist(), target.tolist(), strict=True):
        classes[patient] = classes[patient] | {int(label)}
    strata: dict[frozenset, list[int]] = {}
    for patient, kinds in enumerate(classes):
        strata.setdefault(kinds, []).append(patient)
    rng = np.random.default_rng(seed)
    counts = np.zeros((replicates, n_patients), dtype=np.int64)
    for _, members in sorted(strata.items(), key=lambda kv: sorted(kv[0])):
        n = len(members)
        counts[:, members] = rng.multinomial(max(1, n - 1), np.full(n, 1.0 / n), size=replicates)
    return Resamples(counts, codes.astype(np.int64), unit, len(strata))


def interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of the finite bootstrap values (NaN, NaN when there are none)."""
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    if not len(arr):
        return (np.nan, np.nan)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(arr, [tail, 100 - tail])
    return float(low), float(high)


def p_value(deltas: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "no difference": twice the share of replicates on the far
    side of zero, counted with the observed sample (Davison and Hinkley's +1). It inverts the
    percentile interval: p < 0.05 exactly when the 95% interval leaves out zero, up to one
    replicate's step."""
    finite = np.asarray(deltas, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return np.nan
    far = min(int(np.sum(finite <= 0)), int(np.sum(finite >= 0)))
    return float(min(1.0, 2 * (far + 1) / (len(finite) + 1)))


@dataclass
class Uncertain:
    """Metrics, each with its 95% bootstrap interval, and the replicates behind them."""

    values: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    n_replicates: int = 0
    undefined: dict[str, int] = field(default_factory=dict)  # replicates where a metric had
    # no value (a class missing from it): never silently dropped, counted here

    @classmethod
    def of(cls, values: Mapping[str, float], draws: Mapping[str, np.ndarray]) -> Uncertain:
        undefined = {k: int(np.sum(~np.isfinite(d))) for k, d in draws.items()}
        return cls(dict(values), {k: interval(draws[k]) for k in values},
                   len(next(iter(draws.values()))) if draws else 0,
                   {k: n for k, n in undefined.items() if n})

    def degenerate_intervals(self, names: Sequence[str] = METRICS) -> list[str]:
        """Metrics (of ``names``: the table's) whose interval has zero width (every replicate
        gave one value)."""
        return [k for k in names if k in self.intervals
                and np.isfinite(self.intervals[k][0]) and np.isfinite(self.intervals[k][1])
                and self.intervals[k][1] - self.intervals[k][0] <= 1e-12]


def bootstrap(probs: np.ndarray, target: np.ndarray, positive: int | None,
              threshold: float | None, samples: Resamples) -> Uncertain:
    """The engine's metrics at the operating point, with their intervals over ``samples``."""
    draws = [weighted_scores(probs, target, positive, threshold, w) for w in samples.chunks()]
    return Uncertain.of(scores(probs, target, positive, threshold), _joined(draws))


def bootstrap_classes(probs: np.ndarray, target: np.ndarray, positive: int | None,
                      threshold: float | None, samples: Resamples) -> dict[int, Uncertain]:
    """Per class (one-vs-rest): AUROC, sensitivity and specificity with their intervals."""
    ones = np.ones((1, len(target)))
    point = weighted_class_scores(probs, target, positive, threshold, ones)
    draws = [weighted_class_scores(probs, target, positive, threshold, w)
             for w in samples.chunks()]
    return {k: Uncertain.of({m: float(v[0]) for m, v in point[k].items()},
                            _joined([d[k] for d in draws])) for k in point}


def auroc_draws(probs: np.ndarray, target: np.ndarray, positive: int | None,
                samples: Resamples) -> np.ndarray:
    """(R,) the AUROC of every replicate."""
    return np.concatenate([weighted_auroc_of(probs, target, positive, w)
                           for w in samples.chunks()])


def _joined(draws: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([d[k] for d in draws]) for k in draws[0]} if draws else {}
