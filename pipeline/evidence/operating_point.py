"""The decision threshold of a binary model, chosen on validation (``select.operating_point``):
``youden`` (sensitivity + specificity - 1 at its largest), ``sensitivity:0.95`` (the most
specific threshold that keeps validation sensitivity at 0.95 or more), ``specificity:0.95``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_curve

from pipeline.common.errors import ConfigError

KINDS = ("youden", "sensitivity", "specificity")


def parse(spec: str) -> tuple[str, float | None]:
    """``youden`` -> ("youden", None); ``sensitivity:0.95`` -> ("sensitivity", 0.95)."""
    kind, _, value = str(spec).partition(":")
    if kind == "youden" and not value:
        return kind, None
    try:
        target = float(value)
    except ValueError:
        target = -1.0
    if kind not in KINDS[1:] or not 0.0 < target <= 1.0:
        raise ConfigError(
            f"select.operating_point={spec}: use youden, sensitivity:<0-1> or specificity:<0-1> "
            "(e.g. sensitivity:0.95)"
        )
    return kind, target


def choose_threshold(probs: np.ndarray, target: np.ndarray, positive: int, spec: str) -> float:
    """The threshold on the positive class's probability that ``spec`` asks for, on these
    (validation) predictions; a case is positive when its probability reaches it."""
    kind, value = parse(spec)
    y = np.asarray(target) == positive
    if not 0 < int(y.sum()) < len(y):
        return 0.5  # one class only: nothing to trade off
    fpr, tpr, thresholds = roc_curve(y, probs[:, positive], drop_intermediate=False)
    thresholds = np.minimum(thresholds, 1.0)  # the first is +inf: nothing is positive
    if kind == "youden":
        best = int(np.argmax(tpr - fpr))
    elif kind == "sensitivity":
        best = int(np.flatnonzero(tpr >= value - 1e-12)[0])  # the highest threshold reaching it
    else:
        best = int(np.flatnonzero(1.0 - fpr >= value - 1e-12)[-1])  # the lowest one keeping it
    return float(thresholds[best])


def degenerate(labels: np.ndarray, classes: Sequence[str],
               zero_width: Sequence[str] = ()) -> list[str]:
    """Why an operating point tells nothing (empty when it is not degenerate): every image
    called one class, or metrics whose interval has zero width."""
    reasons = []
    called = np.unique(np.asarray(labels))
    if len(called) == 1 and len(classes) > 1:
        reasons.append(f"every test image is called {classes[int(called[0])]}")
    if zero_width:
        reasons.append(f"zero-width interval of {', '.join(zero_width)}")
    return reasons
