"""Paired comparisons of models on the same test patients, and Holm's adjustment for several.

The p-value comes from the same paired patient bootstrap that gives the interval (both models
scored on each resample of whole patients), so the two never disagree about zero beyond one
replicate's step. An image-level test (DeLong's, counting every image as an independent case)
rejects a true null far too often when patients bring several images: it is not used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.evidence.bootstrap import Resamples, auroc_draws, interval, p_value, resample
from pipeline.evidence.metrics import weighted_auroc_of

LEVEL = 0.05


@dataclass
class Paired:
    """One model against another on the same test patients."""

    delta_auroc: float  # this model's AUROC minus the other's
    delta_ci: tuple[float, float]  # 95% paired bootstrap percentile interval
    p_value: float  # two-sided, of "the same AUROC", from the same replicates
    test: str  # e.g. "paired patient bootstrap"
    n_replicates: int = 0

    def agrees(self) -> bool:
        """Whether p and the interval say the same about zero (to one replicate's step)."""
        low, high = self.delta_ci
        if not (np.isfinite(self.p_value) and np.isfinite(low) and np.isfinite(high)):
            return True
        excludes = low > 0 or high < 0
        step = 4.0 / (self.n_replicates + 1)
        return excludes == (self.p_value < LEVEL) or abs(self.p_value - LEVEL) <= step


def paired(a: np.ndarray, b: np.ndarray, target: np.ndarray, positive: int | None,
           samples: Resamples | int, patients: Sequence[str], seed: int = 0,
           unit: str = "patient") -> Paired:
    """AUROC(a) - AUROC(b) on the same test rows, with its paired bootstrap interval and
    p-value. ``samples``: the resamples to use (drawn over ``patients``), or how many to draw
    (stratified patient bootstrap, seeded by ``seed``). ``patients``: each row's patient."""
    target = np.asarray(target)
    if isinstance(samples, int):
        samples = resample(patients, target, samples, seed, unit)
    rows = np.unique(np.asarray([str(p) for p in patients]), return_inverse=True)[1].ravel()
    if len(rows) != len(target) or not np.array_equal(rows, samples.rows):
        raise ValueError("the resamples were drawn over other patients than these test rows")
    ones = np.ones((1, len(target)))
    delta = float(weighted_auroc_of(a, target, positive, ones)[0]
                  - weighted_auroc_of(b, target, positive, ones)[0])
    deltas = auroc_draws(a, target, positive, samples) - auroc_draws(b, target, positive, samples)
    return Paired(delta, interval(deltas), p_value(deltas), f"paired {samples.unit} bootstrap",
                  len(samples))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error at most the level), NaN kept as NaN.
    Written here: statsmodels, which has it, is not a dependency for five lines."""
    p = np.asarray(p_values, dtype=float)
    finite = np.flatnonzero(np.isfinite(p))
    out = np.full(len(p), np.nan)
    order = finite[np.argsort(p[finite], kind="stable")]
    m, running = len(order), 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out.tolist()
