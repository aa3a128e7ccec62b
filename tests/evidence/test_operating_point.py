"""The operating point chosen on validation, and the flag of a degenerate one."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evidence.metrics import predicted, scores
from pipeline.evidence.operating_point import choose_threshold, degenerate, parse


def binary(n: int, seed: int):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-((2 * target - 1) + rng.normal(0, 1, n))))
    return np.column_stack([1 - p, p]), target


@pytest.mark.parametrize("spec", ["sensitivity:0.9", "specificity:0.8", "youden"])
def test_the_operating_point_chosen_on_validation_does_what_it_says_there(spec):
    probs, target = binary(200, seed=4)
    t = choose_threshold(probs, target, 1, spec)
    at = scores(probs, target, 1, t)
    candidates = np.unique(probs[:, 1])
    kind, value = parse(spec)
    if kind == "sensitivity":
        assert at["sensitivity"] >= 0.9
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


def test_an_operating_point_that_calls_everything_one_class_is_degenerate():
    probs, target = binary(50, seed=1)
    classes = ["non_covid", "covid"]
    everything = predicted(probs, 1, 0.0)
    assert degenerate(everything, classes) == ["every test image is called covid"]
    assert degenerate(predicted(probs, 1, 0.5), classes) == []
    assert degenerate(predicted(probs, 1, 0.5), classes, ["sensitivity"]) == [
        "zero-width interval of sensitivity"]
