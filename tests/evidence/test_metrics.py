"""The one metrics engine against scikit-learn: every metric at an operating point, on whole data
sets and on resampled ones (a weight per row is the same as repeating the row)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from pipeline.evidence.metrics import (
    class_scores,
    predicted,
    score_named,
    scores,
    weighted_scores,
)


def binary(n: int, seed: int, signal: float = 1.0, ties: bool = False):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-(signal * (2 * target - 1) + rng.normal(0, 1, n))))
    if ties:
        p = np.round(p, 1)
    return np.column_stack([1 - p, p]), target


def multiclass(n: int, seed: int, k: int = 3):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, k, n)
    probs = rng.dirichlet(np.ones(k), n)
    probs[np.arange(n), target] += 0.6
    return probs / probs.sum(axis=1, keepdims=True), target


def sklearn_binary(probs, target, pos, threshold):
    y, p = target == pos, predicted(probs, pos, threshold) == pos
    return {"sensitivity": recall_score(y, p), "specificity": recall_score(~y, ~p),
            "accuracy": accuracy_score(y, p), "f1": f1_score(y, p, zero_division=0),
            "precision": precision_score(y, p, zero_division=0),
            "npv": precision_score(~y, ~p, zero_division=0),
            "auroc": roc_auc_score(y, probs[:, pos]),
            "balanced_accuracy": balanced_accuracy_score(y, p)}


@pytest.mark.parametrize("pos,threshold,ties", [(1, 0.3, False), (0, 0.6, True), (1, None, True)])
def test_binary_metrics_are_scikit_learns(pos, threshold, ties):
    probs, target = binary(120, seed=3, ties=ties)
    ours = scores(probs, target, pos, threshold)
    for name, value in sklearn_binary(probs, target, pos, threshold).items():
        assert ours[name] == pytest.approx(value, abs=1e-12), name


def test_a_weight_is_a_repeated_row():
    probs, target = binary(60, seed=4, ties=True)
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 3, (5, 60))
    weighted = weighted_scores(probs, target, 1, 0.45, counts.astype(float))
    for r in range(5):
        rows = np.repeat(np.arange(60), counts[r])
        plain = sklearn_binary(probs[rows], target[rows], 1, 0.45)
        for name, value in plain.items():
            assert weighted[name][r] == pytest.approx(value, abs=1e-12), (r, name)


def test_multiclass_metrics_are_macro_one_vs_rest_averages():
    probs, target = multiclass(150, seed=5)
    ours = scores(probs, target, None, None)
    pred = probs.argmax(axis=1)
    labels = [0, 1, 2]
    assert ours["accuracy"] == pytest.approx(accuracy_score(target, pred))
    assert ours["sensitivity"] == pytest.approx(recall_score(target, pred, average="macro"))
    assert ours["precision"] == pytest.approx(precision_score(target, pred, average="macro"))
    assert ours["f1"] == pytest.approx(f1_score(target, pred, average="macro"))
    assert ours["auroc"] == pytest.approx(roc_auc_score(target, probs, multi_class="ovr",
                                                        labels=labels))
    specificity = np.mean([recall_score(target != k, pred != k) for k in labels])
    assert ours["specificity"] == pytest.approx(specificity)


def test_per_class_results_are_one_vs_rest():
    probs, target = multiclass(150, seed=6)
    pred = probs.argmax(axis=1)
    per = class_scores(probs, target, None, None)
    for k in range(3):
        assert per[k]["auroc"] == pytest.approx(roc_auc_score(target == k, probs[:, k]))
        assert per[k]["sensitivity"] == pytest.approx(recall_score(target == k, pred == k))
        assert per[k]["specificity"] == pytest.approx(recall_score(target != k, pred != k))


def test_undefined_metrics_are_nan_not_zero():
    probs, target = binary(20, seed=7)
    only_negatives = np.zeros(20, dtype=int)
    values = scores(probs, only_negatives, 1, 0.5)
    assert np.isnan(values["auroc"]) and np.isnan(values["sensitivity"])
    assert values["specificity"] == pytest.approx(np.mean(probs[:, 1] < 0.5))


def test_a_training_metric_name_is_scored_as_training_scores_it():
    probs, target = binary(80, seed=8)
    assert score_named("val_auroc", probs, target, 1) == pytest.approx(
        roc_auc_score(target, probs[:, 1]))
    assert score_named("val_accuracy", probs, target, 1) == pytest.approx(
        accuracy_score(target, probs.argmax(axis=1)))
    assert score_named("val_loss", probs, target, 1) == pytest.approx(
        -np.mean(np.log(probs[np.arange(80), target])))
    with pytest.raises(KeyError, match="no metric 'val_kappa'"):
        score_named("val_kappa", probs, target, 1)
