"""Temperature scaling of the model that is served: fitted on its networks' own validation
predictions, applied to each network before averaging; on a cross-validated model the test ECE
after calibration is not worse than before (where fitting on single networks and applying the
temperature to their mean is)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from pipeline.evidence.calibration import (
    TEMPERATURES,
    Calibration,
    brier,
    ece,
    fit_calibration,
    fit_temperature,
    scaled,
)
from pipeline.evidence.metrics import nll


def binary(n: int, seed: int, signal: float = 1.0):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-(signal * (2 * target - 1) + rng.normal(0, 1, n))))
    return np.column_stack([1 - p, p]), target


def cv_run(seed: int, disagreement: float, folds: int = 5, n_val: int = 600,
           n_test: int = 2000):
    """A cross-validated run, simulated: fold networks that see one true signal (log-odds
    2.4 s), each with its own error of sd ``disagreement`` on s, all three times over-confident
    (deep networks' usual failing). Out-of-fold validation: each image predicted by the one
    network that held it out; test: every network predicts every image, the model serves their
    mean."""
    rng = np.random.default_rng(seed)

    def networks(n: int):
        y = rng.integers(0, 2, n)
        s = 1.2 * (2 * y - 1) + rng.normal(0, 1, n)
        logits = [3 * 2.4 * (s + rng.normal(0, disagreement, n)) for _ in range(folds)]
        return np.stack([np.column_stack([1 - p, p]) for p in (1 / (1 + np.exp(-z))
                                                               for z in logits)]), y

    val_all, y_val = networks(n_val)
    oof = val_all[rng.integers(0, folds, n_val), np.arange(n_val)]
    test, y_test = networks(n_test)
    return oof[None], y_val, test, y_test


@pytest.mark.parametrize("seed", range(3))
def test_on_a_cv_run_test_ece_after_calibration_is_not_worse_than_before(seed):
    val, y_val, test, y_test = cv_run(seed, disagreement=0.3)
    served = fit_calibration(val, y_val)
    assert served.temperature > 2  # it undoes the networks' over-confidence
    before = ece(test.mean(axis=0), y_test, 1)
    after = ece(served.probabilities(test), y_test, 1)
    assert after <= before


@pytest.mark.parametrize("seed", range(3))
def test_a_temperature_fitted_on_single_networks_goes_on_each_network_not_on_their_mean(seed):
    # Networks that disagree: their mean is much smoother than any one of them. The temperature
    # of single networks applied to the mean over-corrects; applied to each network before
    # averaging, it does less harm (a mean of calibrated networks is still somewhat
    # under-confident: the report says so when test ECE rises).
    val, y_val, test, y_test = cv_run(seed, disagreement=1.0)
    served = fit_calibration(val, y_val)
    on_the_mean = scaled(test.mean(axis=0), served.temperature)
    assert ece(served.probabilities(test), y_test, 1) < ece(on_the_mean, y_test, 1)


def test_the_served_probabilities_are_the_mean_of_the_scaled_networks():
    probs, _ = binary(30, seed=1)
    other, _ = binary(30, seed=2)
    networks = np.stack([probs, other])
    cal = Calibration(2.0, 0.4)
    expected = (scaled(probs, 2.0) + scaled(other, 2.0)) / 2
    np.testing.assert_allclose(cal.probabilities(networks), expected)
    np.testing.assert_allclose(Calibration().probabilities(networks), networks.mean(axis=0))
    np.testing.assert_allclose(cal.probabilities(networks).sum(axis=1), 1.0)


def test_a_temperature_at_its_search_bound_is_flagged():
    probs, target = binary(300, seed=3, signal=0.0)  # no signal: the fit wants T -> infinity
    confident = scaled(probs, 0.05)
    t = fit_temperature(confident, target)
    assert t == pytest.approx(TEMPERATURES[1], rel=1e-3) and Calibration(t).at_bound
    assert not Calibration(1.3).at_bound and not Calibration().at_bound


def test_temperature_scaling_never_raises_the_validation_nll():
    probs, target = binary(300, seed=5, signal=0.5)
    overconfident = scaled(probs, 0.3)
    t = fit_temperature(overconfident, target)
    assert t > 1.5
    assert nll(scaled(overconfident, t), target) < nll(overconfident, target)
    for seed in range(3):
        p, y = binary(100, seed=seed)
        assert nll(scaled(p, fit_temperature(p, y)), y) <= nll(p, y) + 1e-12


def test_brier_is_sklearns():
    probs, target = binary(50, seed=6)
    assert brier(probs, target, 1) == pytest.approx(brier_score_loss(target, probs[:, 1]))
    assert brier(probs, target, 0) == pytest.approx(brier_score_loss(target == 0, probs[:, 0]))
