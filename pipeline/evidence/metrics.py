"""The metrics of one set of predictions at an operating point: what every reported table,
interval and decision is computed with (selection, ensembles, external validation).

scikit-learn computes every metric; only the choice of label at a threshold is written here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
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


def nll(probs: np.ndarray, target: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes: the ``*_loss`` of a scored split, and
    what a temperature is fitted to minimise."""
    picked = np.clip(np.asarray(probs, dtype=np.float64)[np.arange(len(target)), target], 1e-12,
                     None)
    return float(-np.mean(np.log(picked)))
