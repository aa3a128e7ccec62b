"""The one metrics engine: every reported metric of a set of predictions at an operating point
(selection's table and intervals, the ensemble, external validation, predict's decision).

Each metric is computed from weighted confusion counts and a weighted AUROC, for many weight
vectors at once: a weight is how often a row is drawn, so one matrix product scores a whole
patient bootstrap. Hand-written for that reason: scikit-learn scores one sample per call, and
thousands of resamples per row would take minutes; tests check every metric against it.
Lightning's per-epoch metrics (pipeline.training.metrics) are training's own, not reported here.
"""

from __future__ import annotations

import numpy as np

# The table's test metrics, in paper 000's order.
METRICS = ("sensitivity", "specificity", "accuracy", "f1", "precision", "npv", "auroc")
# What every scored split carries (training logs these names too, as val_*).
ALL_METRICS = (*METRICS, "balanced_accuracy")
PER_CLASS = ("auroc", "sensitivity", "specificity")  # per class, one-vs-rest
CHUNK = 256  # weight vectors scored at a time (bounds memory on large test sets)


def predicted(probs: np.ndarray, positive: int | None, threshold: float | None) -> np.ndarray:
    """Labels: the positive class where its probability reaches ``threshold`` (binary tasks with
    an operating point), else the most probable class."""
    if positive is None or threshold is None or probs.shape[1] != 2:
        return probs.argmax(axis=1)
    return np.where(probs[:, positive] >= threshold, positive, 1 - positive)


def scores(probs: np.ndarray, target: np.ndarray, positive: int | None,
           threshold: float | None) -> dict[str, float]:
    """The metrics of one set of predictions (binary: of the positive class, at the threshold;
    multi-class: macro averages of the one-vs-rest values, at the most probable class)."""
    values = weighted_scores(probs, target, positive, threshold, np.ones((1, len(target))))
    return {name: float(v[0]) for name, v in values.items()}


def class_scores(probs: np.ndarray, target: np.ndarray, positive: int | None,
                 threshold: float | None) -> dict[int, dict[str, float]]:
    """Per class (one-vs-rest): AUROC, sensitivity and specificity, at the operating point."""
    values = weighted_class_scores(probs, target, positive, threshold,
                                   np.ones((1, len(target))))
    return {k: {name: float(v[0]) for name, v in per.items()} for k, per in values.items()}


def weighted_scores(probs: np.ndarray, target: np.ndarray, positive: int | None,
                    threshold: float | None, weights: np.ndarray) -> dict[str, np.ndarray]:
    """``scores`` for every row of ``weights`` (R, N): (R,) arrays, NaN where undefined."""
    probs, target = np.asarray(probs, dtype=np.float64), np.asarray(target)
    pred = predicted(probs, positive, threshold)
    total = weights.sum(axis=1)
    out = {"accuracy": _div(weights @ (pred == target).astype(float), total)}
    if probs.shape[1] == 2:
        pos = 1 if positive is None else positive
        tp, fn, fp, tn = _confusion(weights, target == pos, pred == pos)
        out["sensitivity"] = _div(tp, tp + fn)
        out["specificity"] = _div(tn, tn + fp)
        out["precision"] = _div(tp, tp + fp, empty=0.0)
        out["npv"] = _div(tn, tn + fn, empty=0.0)
        out["f1"] = _div(2 * tp, 2 * tp + fp + fn, empty=0.0)
        out["auroc"] = weighted_auroc(probs[:, pos], target == pos, weights)
        out["balanced_accuracy"] = np.nanmean(np.stack([out["sensitivity"],
                                                        out["specificity"]]), axis=0)
        return out
    per = [_confusion(weights, target == k, pred == k) for k in range(probs.shape[1])]
    recall = np.stack([_div(tp, tp + fn) for tp, fn, _, _ in per])
    out["sensitivity"] = _nanmean(recall)
    out["balanced_accuracy"] = out["sensitivity"]
    out["specificity"] = _nanmean(np.stack([_div(tn, tn + fp) for _, _, fp, tn in per]))
    out["precision"] = np.mean([_div(tp, tp + fp, 0.0) for tp, _, fp, _ in per], axis=0)
    out["npv"] = np.mean([_div(tn, tn + fn, 0.0) for _, fn, _, tn in per], axis=0)
    out["f1"] = np.mean([_div(2 * tp, 2 * tp + fp + fn, 0.0) for tp, fn, fp, _ in per], axis=0)
    # Macro one-vs-rest AUROC (scikit-learn's multi_class="ovr"): undefined without every class.
    out["auroc"] = weighted_auroc_of(probs, target, positive, weights)
    return out


def weighted_class_scores(probs: np.ndarray, target: np.ndarray, positive: int | None,
                          threshold: float | None, weights: np.ndarray
                          ) -> dict[int, dict[str, np.ndarray]]:
    """``class_scores`` for every row of ``weights``."""
    probs, target = np.asarray(probs, dtype=np.float64), np.asarray(target)
    pred = predicted(probs, positive, threshold)
    out = {}
    for k in range(probs.shape[1]):
        tp, fn, fp, tn = _confusion(weights, target == k, pred == k)
        out[k] = {"auroc": weighted_auroc(probs[:, k], target == k, weights),
                  "sensitivity": _div(tp, tp + fn), "specificity": _div(tn, tn + fp)}
    return out


def weighted_auroc(score: np.ndarray, truth: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of ``score`` for the rows where ``truth`` holds against the rest, under each row of
    ``weights`` (R, N): the weighted share of (positive, negative) pairs the positive outranks,
    ties counting half (scikit-learn's value on the resampled rows). NaN without both kinds."""
    order = np.argsort(score, kind="stable")
    ranked, truth = np.asarray(score)[order], np.asarray(truth, dtype=bool)[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # one group per tied value
    out = []
    for begin in range(0, len(weights), CHUNK):
        w = weights[begin : begin + CHUNK][:, order]
        pos = np.add.reduceat(w * truth, starts, axis=1)
        neg = np.add.reduceat(w * ~truth, starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        pairs = pos.sum(axis=1) * neg.sum(axis=1)
        out.append(_div((pos * (below + 0.5 * neg)).sum(axis=1), pairs))
    return np.concatenate(out) if out else np.zeros(0)


def weighted_auroc_of(probs: np.ndarray, target: np.ndarray, positive: int | None,
                      weights: np.ndarray) -> np.ndarray:
    """The table's AUROC alone (binary: of the positive class; multi-class: macro one-vs-rest)
    for every row of ``weights``."""
    probs, target = np.asarray(probs, dtype=np.float64), np.asarray(target)
    if probs.shape[1] == 2:
        pos = 1 if positive is None else positive
        return weighted_auroc(probs[:, pos], target == pos, weights)
    return np.mean([weighted_auroc(probs[:, k], target == k, weights)
                    for k in range(probs.shape[1])], axis=0)


def nll(probs: np.ndarray, target: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes: the ``*_loss`` of a scored split, and
    what a temperature is fitted to minimise."""
    picked = np.clip(np.asarray(probs, dtype=np.float64)[np.arange(len(target)), target], 1e-12,
                     None)
    return float(-np.mean(np.log(picked)))


def score_named(name: str, probs: np.ndarray, target: np.ndarray, positive: int | None) -> float:
    """One metric by the name training logs it under (``val_auroc``, ``val_loss``): at the most
    probable class, as training scores it."""
    bare = name.split("_", 1)[1] if name.startswith(("val_", "test_")) else name
    if bare == "loss":
        return nll(probs, target)
    values = scores(probs, target, positive, None)
    if bare not in values:
        raise KeyError(f"no metric {name!r}: the engine computes {', '.join(ALL_METRICS)}, loss")
    return values[bare]


def _confusion(weights: np.ndarray, truth: np.ndarray, said: np.ndarray
               ) -> tuple[np.ndarray, ...]:
    """Weighted (TP, FN, FP, TN) of one class for every row of ``weights``."""
    cells = np.stack([truth & said, truth & ~said, ~truth & said, ~truth & ~said], axis=1)
    counts = weights @ cells.astype(float)
    return counts[:, 0], counts[:, 1], counts[:, 2], counts[:, 3]


def _div(num: np.ndarray, den: np.ndarray, empty: float = np.nan) -> np.ndarray:
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), empty)


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over axis 0 of the defined values (NaN where none is)."""
    defined = np.isfinite(values)
    count = defined.sum(axis=0)
    return _div(np.where(defined, values, 0.0).sum(axis=0), count)
