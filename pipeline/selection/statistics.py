"""A paired comparison of two models on the same test patients.

DeLong's test is written here: no maintained library in our dependencies has DeLong's paired
AUROC test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from pipeline.evidence.bootstrap import interval
from pipeline.evidence.metrics import scores


@dataclass
class Paired:
    """One model against another on the same test patients."""

    delta_auroc: float  # this model's AUROC minus the other's
    delta_ci: tuple[float, float]
    p_value: float
    test: str  # delong | bootstrap


def paired(a: np.ndarray, b: np.ndarray, target: np.ndarray, positive: int | None,
           samples: list[np.ndarray]) -> Paired:
    """AUROC(a) - AUROC(b) with its paired-bootstrap interval (the same resampled patients for
    both), and a p-value: DeLong's test for a binary task, the paired bootstrap otherwise."""

    def auroc(probs: np.ndarray, y: np.ndarray) -> float:
        return scores(probs, y, positive, None)["auroc"]

    delta = auroc(a, target) - auroc(b, target)
    deltas = np.array([auroc(a[r], target[r]) - auroc(b[r], target[r]) for r in samples])
    ci = interval(deltas)
    if a.shape[1] == 2:
        pos = 1 if positive is None else positive
        return Paired(delta, ci, delong_p_value(a[:, pos], b[:, pos], target == pos), "delong")
    finite = deltas[np.isfinite(deltas)]
    if not len(finite):
        return Paired(delta, ci, np.nan, "bootstrap")
    # Two-sided: how often the resampled difference falls on the other side of zero.
    share = min(np.mean(finite <= 0), np.mean(finite >= 0))
    return Paired(delta, ci, float(min(1.0, 2 * share)), "bootstrap")


def delong_p_value(score_a: np.ndarray, score_b: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p-value of DeLong's test (DeLong et al. 1988, in Sun and Xu's 2014 fast form)
    that two correlated AUROCs on the same cases are equal."""
    y = np.asarray(y, dtype=bool)
    if not 0 < y.sum() < len(y):
        return np.nan
    (auc_a, v10_a, v01_a), (auc_b, v10_b, v01_b) = _placements(score_a, y), _placements(
        score_b, y)
    m, n = int(y.sum()), int((~y).sum())
    s10 = np.cov(np.vstack([v10_a, v10_b])) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(np.vstack([v01_a, v01_b])) if n > 1 else np.zeros((2, 2))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    if var <= 1e-15:
        return 1.0 if abs(auc_a - auc_b) < 1e-12 else 0.0
    z = (auc_a - auc_b) / np.sqrt(var)
    return float(2 * norm.sf(abs(z)))


def _placements(score: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUROC and DeLong's structural components: for each positive the share of negatives it
    outranks (ties half), for each negative the share of positives that outrank it."""
    pos, neg = np.asarray(score)[y], np.asarray(score)[~y]
    greater = (pos[:, None] > neg[None, :]).astype(float)
    greater += 0.5 * (pos[:, None] == neg[None, :])
    v10 = greater.mean(axis=1)
    v01 = greater.mean(axis=0)
    return float(v10.mean()), v10, v01
