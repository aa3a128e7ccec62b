"""Test metrics with their uncertainty: the metrics at an operating point, patient-level bootstrap
intervals, and a paired comparison of two models on the same test patients.

scikit-learn computes every metric; the resampling and DeLong's test are written here: no
maintained library in our dependencies resamples by patient or has DeLong's paired AUROC test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

# The table's test metrics, in paper 000's order.
METRICS = ("sensitivity", "specificity", "accuracy", "f1", "precision", "npv", "auroc")
Scores = Callable[[np.ndarray, np.ndarray], dict[str, float]]


def predicted(probs: np.ndarray, positive: int | None, threshold: float | None) -> np.ndarray:
    """Labels: the positive class where its probability reaches ``threshold`` (binary tasks with
    an operating point), else the most probable class."""
    if positive is None or threshold is None or probs.shape[1] != 2:
        return probs.argmax(axis=1)
    negative = 1 - positive
    return np.where(probs[:, positive] >= threshold, positive, negative)


def scores(probs: np.ndarray, target: np.ndarray, positive: int | None,
           threshold: float | None) -> dict[str, float]:
    """The table's metrics of one set of predictions (binary: of the positive class, at the
    threshold; multi-class: macro averages, one-vs-rest for specificity, NPV and AUROC)."""
    pred = predicted(probs, positive, threshold)
    classes = probs.shape[1]
    out = {"accuracy": float(accuracy_score(target, pred))}
    if classes == 2:
        pos = 1 if positive is None else positive
        y, p = target == pos, pred == pos
        out["sensitivity"] = _ratio(np.sum(y & p), np.sum(y))
        out["specificity"] = _ratio(np.sum(~y & ~p), np.sum(~y))
        out["precision"] = float(precision_score(y, p, zero_division=0))
        out["npv"] = _ratio(np.sum(~y & ~p), np.sum(~p), empty=0.0)
        out["f1"] = float(f1_score(y, p, zero_division=0))
        out["auroc"] = _auroc(y, probs[:, pos])
        return out
    labels = list(range(classes))
    out["sensitivity"] = float(recall_score(target, pred, labels=labels, average="macro",
                                            zero_division=0))
    out["precision"] = float(precision_score(target, pred, labels=labels, average="macro",
                                             zero_division=0))
    out["f1"] = float(f1_score(target, pred, labels=labels, average="macro", zero_division=0))
    spec, npv = [], []
    for k in labels:
        y, p = target == k, pred == k
        spec.append(_ratio(np.sum(~y & ~p), np.sum(~y)))
        npv.append(_ratio(np.sum(~y & ~p), np.sum(~p), empty=0.0))
    out["specificity"] = float(np.nanmean(spec)) if not np.all(np.isnan(spec)) else np.nan
    out["npv"] = float(np.mean(npv))
    present = np.unique(target)
    if len(present) == classes:
        out["auroc"] = float(roc_auc_score(target, probs, multi_class="ovr", average="macro",
                                           labels=labels))
    else:
        out["auroc"] = np.nan
    return out


def _ratio(num: float, den: float, empty: float = np.nan) -> float:
    return float(num) / float(den) if den else empty


def _auroc(y: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(y, score)) if 0 < int(y.sum()) < len(y) else np.nan


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
