"""Paired comparisons that respect patients: the contract of ``paired``, the null-rejection
property under clustered images (where an image-level test fails), and Holm's adjustment."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pipeline.evidence.bootstrap import resample
from pipeline.selection.statistics import holm, paired


def null_data(rng: np.random.Generator, n_patients: int = 60):
    """Two equally good models on patients of 1-9 images, one class each: a patient-level
    effect shared by both models, and one of each model's own (it errs on all of a patient's
    images alike), plus image noise."""
    sizes = rng.integers(1, 10, n_patients)
    patient = np.repeat(np.arange(n_patients), sizes)
    y = rng.integers(0, 2, n_patients)[patient]
    shared = rng.normal(0, 1, n_patients)[patient]
    scores = [y + shared + rng.normal(0, 1, n_patients)[patient] + rng.normal(0, 0.5, len(y))
              for _ in range(2)]
    probs = [np.column_stack([1 - s, s]) for s in (1 / (1 + np.exp(-x)) for x in scores)]
    return probs[0], probs[1], y, [f"p{i}" for i in patient]


def rejection_rate(simulations: int, replicates: int, seed: int, unit: str) -> float:
    rng = np.random.default_rng(seed)
    rejected = 0
    for i in range(simulations):
        a, b, y, patients = null_data(rng)
        ids = patients if unit == "patient" else [str(k) for k in range(len(y))]
        result = paired(a, b, y, 1, replicates, ids, seed=i, unit=unit)
        rejected += result.p_value < 0.05
        assert result.agrees(), (i, result)
    return rejected / simulations


def test_under_a_true_null_with_clustered_images_the_patient_test_rejects_at_its_level():
    assert rejection_rate(1000, 200, seed=0, unit="patient") <= 0.07
    # The same data resampled by image (every image an independent case) rejects far more
    # often: the property is one a test that ignores patients fails.
    assert rejection_rate(200, 200, seed=0, unit="image") > 0.15


@pytest.mark.slow
def test_the_null_rejection_rate_holds_with_more_data_sets_and_replicates():
    rate = rejection_rate(4000, 500, seed=1, unit="patient")
    assert 0.03 <= rate <= 0.07


def test_paired_takes_resamples_or_a_count_and_returns_the_contract():
    a, b, y, patients = null_data(np.random.default_rng(3))
    drawn = paired(a, b, y, 1, 300, patients, seed=4)
    assert (drawn.test, drawn.n_replicates) == ("paired patient bootstrap", 300)
    assert drawn.delta_auroc == pytest.approx(roc_auc_score(y, a[:, 1])
                                              - roc_auc_score(y, b[:, 1]))
    low, high = drawn.delta_ci
    assert low <= drawn.delta_auroc <= high and 0 < drawn.p_value <= 1
    given = paired(a, b, y, 1, resample(patients, y, 300, 4), patients)
    assert (given.delta_ci, given.p_value) == (drawn.delta_ci, drawn.p_value)
    same = paired(a, a.copy(), y, 1, 100, patients)
    assert same.delta_auroc == 0 and same.p_value == 1.0 and same.delta_ci == (0.0, 0.0)
    with pytest.raises(ValueError, match="other patients"):
        paired(a, b, y, 1, resample(patients[::-1], y, 10, 0), patients)


def test_a_multiclass_comparison_is_of_the_macro_auroc():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, 90)
    a = rng.dirichlet([1, 1, 1], 90)
    a[np.arange(90), target] += 1.0
    a /= a.sum(axis=1, keepdims=True)
    b = rng.dirichlet([1, 1, 1], 90)
    result = paired(a, b, target, None, 200, [str(i // 2) for i in range(90)])
    expected = (roc_auc_score(target, a, multi_class="ovr")
                - roc_auc_score(target, b, multi_class="ovr"))
    assert result.delta_auroc == pytest.approx(expected)
    assert result.delta_ci[0] > 0 and result.p_value < 0.05  # a is far better


def test_holm_steps_down_and_never_lowers_a_p_value():
    # Holm (1979): sorted p times (m, m-1, ...), made monotone, capped at 1.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == [0.5]
    assert holm([0.2, 0.9, 0.6]) == pytest.approx([0.6, 1.0, 1.0])
    out = holm([0.02, np.nan, 0.04])
    assert out[0] == pytest.approx(0.04) and np.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert holm([]) == []
