"""The numbers behind the comparison table: bootstrap intervals, DeLong's test, the operating
point and temperature scaling, each against an independent computation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import brier_score_loss, roc_auc_score

from pipeline.evidence.bootstrap import bootstrap, interval, patient_groups, resamples
from pipeline.evidence.calibration import brier, fit_temperature, scaled
from pipeline.evidence.metrics import nll, scores
from pipeline.evidence.operating_point import choose_threshold, parse
from pipeline.selection.statistics import delong_p_value, paired


def binary(n: int, seed: int, signal: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-(signal * (2 * target - 1) + rng.normal(0, 1, n))))
    return np.column_stack([1 - p, p]), target


def accuracy(probs: np.ndarray, target: np.ndarray) -> dict[str, float]:
    return {"accuracy": float(np.mean(probs.argmax(axis=1) == target))}


def test_the_bootstrap_interval_is_the_brute_force_one_on_a_small_case():
    # 4 patients of 2 images: 4**4 = 256 equally likely resamples, enumerated.
    probs, target = binary(8, seed=3)
    patients = [f"p{i // 2}" for i in range(8)]
    groups = patient_groups(patients)
    exact = sorted(
        accuracy(probs[np.concatenate([groups[g] for g in draw])],
                 target[np.concatenate([groups[g] for g in draw])])["accuracy"]
        for draw in itertools.product(range(4), repeat=4))
    low, high = np.percentile(exact, [2.5, 97.5])
    result = bootstrap(probs, target, resamples(groups, 40000, seed=0), accuracy)
    assert result.values["accuracy"] == accuracy(probs, target)["accuracy"]
    ours = result.intervals["accuracy"]
    assert abs(ours[0] - low) <= 1 / 8 and abs(ours[1] - high) <= 1 / 8  # one image's step


def test_resampling_takes_whole_patients_and_repeats_from_its_seed():
    patients = ["a", "a", "b", "c", "c", "c"]
    groups = patient_groups(patients)
    samples = resamples(groups, 50, seed=7)
    for rows in samples:
        drawn = [patients[r] for r in rows]
        for patient in set(drawn):  # every drawn patient brings all of its images, each time
            assert drawn.count(patient) % patients.count(patient) == 0
    again = resamples(groups, 50, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(samples, again, strict=True))
    assert all(np.isnan(interval([np.nan, np.nan])))  # NaN bounds when nothing is defined


def delong_by_definition(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> float:
    """DeLong, DeLong and Clarke-Pearson (1988), written out: placement values by double loop,
    their covariance matrices, the z statistic of the difference."""
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)

    def psi(x: float, z: float) -> float:
        return 1.0 if x > z else 0.5 if x == z else 0.0

    v10 = np.array([[np.mean([psi(s[i], s[j]) for j in neg]) for i in pos] for s in (a, b)])
    v01 = np.array([[np.mean([psi(s[i], s[j]) for i in pos]) for j in neg] for s in (a, b)])
    auc = v10.mean(axis=1)
    s10, s01 = np.cov(v10), np.cov(v01)
    contrast = np.array([1.0, -1.0])
    var = contrast @ s10 @ contrast / len(pos) + contrast @ s01 @ contrast / len(neg)
    return float(2 * norm.sf(abs((auc[0] - auc[1]) / np.sqrt(var))))


def test_delong_matches_its_definition_and_sklearn_auroc():
    probs_a, target = binary(60, seed=1, signal=1.5)
    rng = np.random.default_rng(2)
    score_b = np.round(probs_a[:, 1] + rng.normal(0, 0.3, 60), 1)  # rounded: ties
    y = target == 1
    assert delong_p_value(probs_a[:, 1], score_b, y) == pytest.approx(
        delong_by_definition(probs_a[:, 1], score_b, y), rel=1e-9)
    assert delong_p_value(score_b, score_b, y) == 1.0
    probs_b = np.column_stack([1 - score_b, score_b])
    result = paired(probs_a, probs_b, target, 1, resamples(patient_groups(range(60)), 300, 0))
    assert result.test == "delong"
    assert result.delta_auroc == pytest.approx(roc_auc_score(y, probs_a[:, 1])
                                               - roc_auc_score(y, score_b))
    assert result.delta_ci[0] <= result.delta_auroc <= result.delta_ci[1]


def test_a_multiclass_comparison_uses_the_paired_bootstrap():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, 90)
    a = rng.dirichlet([1, 1, 1], 90)
    a[np.arange(90), target] += 1.0
    a /= a.sum(axis=1, keepdims=True)
    result = paired(a, a.copy(), target, None, resamples(patient_groups(range(90)), 200, 0))
    assert result.test == "bootstrap" and result.delta_auroc == 0 and result.p_value == 1.0


@pytest.mark.parametrize("spec", ["sensitivity:0.9", "specificity:0.8", "youden"])
def test_the_operating_point_chosen_on_validation_does_what_it_says_there(spec):
    probs, target = binary(200, seed=4)
    t = choose_threshold(probs, target, 1, spec)
    at = scores(probs, target, 1, t)
    candidates = np.unique(probs[:, 1])
    kind, value = parse(spec)
    if kind == "sensitivity":
        assert at["sensitivity"] >= 0.9
        # the most specific such threshold: any higher one loses the sensitivity
        higher = candidates[candidates > t]
        assert not len(higher) or scores(probs, target, 1, higher[0])["sensitivity"] < 0.9
    elif kind == "specificity":
        assert at["specificity"] >= 0.8
        lower = candidates[candidates < t]
        assert not len(lower) or scores(probs, target, 1, lower[-1])["specificity"] < 0.8
    else:
        youden = [scores(probs, target, 1, c)["sensitivity"] + scores(probs, target, 1, c)[
            "specificity"] for c in candidates]
        assert at["sensitivity"] + at["specificity"] == pytest.approx(max(youden))


def test_temperature_scaling_never_raises_the_validation_nll():
    probs, target = binary(300, seed=5, signal=0.5)
    overconfident = scaled(probs, 0.3)
    t = fit_temperature(overconfident, target)
    assert t > 1.5  # it undoes the overconfidence
    assert nll(scaled(overconfident, t), target) < nll(overconfident, target)
    for seed in range(3):
        p, y = binary(100, seed=seed)
        assert nll(scaled(p, fit_temperature(p, y)), y) <= nll(p, y) + 1e-12


def test_brier_is_sklearns():
    probs, target = binary(50, seed=6)
    assert brier(probs, target, 1) == pytest.approx(brier_score_loss(target, probs[:, 1]))
    assert brier(probs, target, 0) == pytest.approx(brier_score_loss(target == 0, probs[:, 0]))
