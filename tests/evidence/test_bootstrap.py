"""The patient bootstrap: whole patients, stratified so that no replicate lacks a class, seeded,
percentile intervals counted over every replicate; its p-value agrees with its interval."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pipeline.evidence.bootstrap import (
    Uncertain,
    auroc_draws,
    bootstrap,
    interval,
    p_value,
    resample,
)
from pipeline.evidence.metrics import scores


def clustered(seed: int, n_patients: int = 40):
    """Patients of 1-9 images, one class each, a few with images of both classes."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 10, n_patients)
    patient = np.repeat(np.arange(n_patients), sizes)
    target = rng.integers(0, 2, n_patients)[patient]
    mixed = patient < 3  # the first three patients have images of both classes
    target[mixed] = rng.integers(0, 2, int(mixed.sum()))
    p = 1 / (1 + np.exp(-(target * 1.5 + rng.normal(0, 1, n_patients)[patient]
                          + rng.normal(0, 0.5, len(patient)))))
    return np.column_stack([1 - p, p]), target, [f"p{i}" for i in patient]


def test_replicates_draw_whole_patients_within_their_class_strata():
    probs, target, patients = clustered(0)
    samples = resample(patients, target, 200, seed=1)
    ids = np.asarray(patients)
    kinds = {p: frozenset(target[ids == p].tolist()) for p in set(patients)}
    per_stratum = {}
    for p, k in kinds.items():
        per_stratum.setdefault(k, []).append(p)
    assert samples.strata == len(per_stratum)
    for r in range(len(samples)):
        rows = samples.indices(r)
        drawn = ids[rows]
        for p in set(drawn.tolist()):  # a drawn patient brings all of its images, each time
            assert np.sum(drawn == p) % np.sum(ids == p) == 0
        assert set(target[rows].tolist()) == {0, 1}  # no replicate lacks a class
        for members in per_stratum.values():  # n - 1 patients of each stratum (1 of 1)
            n = sum(np.sum(drawn == p) // np.sum(ids == p) for p in members)
            assert n == max(1, len(members) - 1)
    again = resample(patients, target, 200, seed=1)
    assert np.array_equal(samples.counts, again.counts)
    assert not np.array_equal(samples.counts, resample(patients, target, 200, seed=2).counts)


def test_every_replicate_is_scored_as_its_rows_would_be():
    probs, target, patients = clustered(1)
    samples = resample(patients, target, 50, seed=0)
    result = bootstrap(probs, target, 1, 0.5, samples)
    assert result.values == scores(probs, target, 1, 0.5)
    aurocs = auroc_draws(probs, target, 1, samples)
    for r in (0, 17, 49):
        rows = samples.indices(r)
        assert aurocs[r] == pytest.approx(roc_auc_score(target[rows], probs[rows, 1]))
    assert result.intervals["auroc"] == interval(aurocs)
    assert result.n_replicates == 50 and result.undefined == {}


def test_a_replicate_without_a_value_is_counted_never_dropped_silently():
    values = {"auroc": 0.7}
    result = Uncertain.of(values, {"auroc": np.array([0.6, np.nan, 0.8, np.nan])})
    assert result.n_replicates == 4 and result.undefined == {"auroc": 2}
    assert result.intervals["auroc"] == interval([0.6, 0.8])


def test_a_zero_width_interval_is_named():
    result = Uncertain.of({"sensitivity": 1.0, "auroc": 0.7},
                          {"sensitivity": np.ones(10), "auroc": np.linspace(0.6, 0.8, 10)})
    assert result.degenerate_intervals() == ["sensitivity"]


@pytest.mark.parametrize("seed", range(5))
def test_the_p_value_and_the_interval_agree_about_zero(seed):
    rng = np.random.default_rng(seed)
    for shift in np.linspace(-0.06, 0.06, 25):
        deltas = rng.normal(shift, 0.03, 400)
        low, high = interval(deltas)
        p = p_value(deltas)
        excludes = low > 0 or high < 0
        assert excludes == (p < 0.05) or abs(p - 0.05) <= 4 / 401, (shift, low, high, p)
    assert p_value(np.zeros(100)) == 1.0  # two identical models
