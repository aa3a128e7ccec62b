"""How far a model's probabilities can be taken at their word: Brier score, expected calibration
error (15 equal-width bins), temperature scaling, reliability diagrams; and the one place where a
served model's probabilities are calibrated (``Calibration.probabilities``), for selection,
``pipeline.predict`` and ``pipeline.evaluate`` alike.

A model is the mean of one or more networks' probabilities: a cross-validated run's fold
networks, an ensemble's member runs. The temperature is applied to each network's probabilities
before they are averaged, and fitted on those networks' own validation predictions (each fold
network on the out-of-fold images it never trained on): the kind of prediction it is applied
to. Fitting it on single networks and applying it to their mean (a smoother distribution)
over-corrects. The operating point is then chosen on the calibrated validation predictions.

torchmetrics computes the ECE, scikit-learn the Brier score and the reliability curve; the
temperature is one scalar found by SciPy's bounded minimiser of the validation NLL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.optimize import minimize_scalar  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import brier_score_loss  # noqa: E402
from torchmetrics.functional.classification import (  # noqa: E402
    binary_calibration_error,
    multiclass_calibration_error,
)

from pipeline.evidence.metrics import nll  # noqa: E402

BINS = 15
TEMPERATURES = (0.05, 20.0)  # the search range; 1.0 (no change) lies inside it


def brier(probs: np.ndarray, target: np.ndarray, positive: int | None) -> float:
    """Binary: of the positive class's probability; multi-class: the mean squared distance to
    the one-hot truth."""
    if probs.shape[1] == 2:
        pos = 1 if positive is None else positive
        return float(brier_score_loss(target == pos, probs[:, pos]))
    return float(brier_score_loss(target, probs, labels=list(range(probs.shape[1]))))


def ece(probs: np.ndarray, target: np.ndarray, positive: int | None) -> float:
    """Expected calibration error over 15 equal-width bins (binary: of the positive class's
    probability; multi-class: of the top-label confidence)."""
    p = torch.from_numpy(np.array(probs, dtype=np.float32))
    t = torch.from_numpy(np.array(target, dtype=np.int64))
    if probs.shape[1] == 2:
        pos = 1 if positive is None else positive
        return float(binary_calibration_error(p[:, pos].contiguous(), (t == pos).long(),
                                              n_bins=BINS))
    return float(multiclass_calibration_error(p, t, num_classes=probs.shape[1], n_bins=BINS))


def scaled(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the probabilities a temperature-scaled network would give."""
    logits = np.log(np.clip(probs, 1e-12, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Calibration:
    """How a served model's probabilities are made: each network's probabilities scaled by
    ``temperature`` (None: unscaled), then averaged; the binary decision threshold applies to
    those averaged probabilities (on the scale it was chosen on)."""

    temperature: float | None = None
    threshold: float | None = None

    @property
    def at_bound(self) -> bool:
        """The fitted temperature stopped at an end of its search range: the fit wanted more."""
        return self.temperature is not None and any(
            abs(self.temperature - bound) <= 1e-3 * bound for bound in TEMPERATURES)

    def probabilities(self, networks: np.ndarray) -> np.ndarray:
        """(N, C) served probabilities of (n, N, C) per-network probabilities."""
        networks = np.asarray(networks, dtype=np.float64)
        if self.temperature is None:
            return networks.mean(axis=0)
        return np.mean([scaled(p, self.temperature) for p in networks], axis=0)


def fit_calibration(val_networks: np.ndarray, val_target: np.ndarray) -> Calibration:
    """The temperature of ``val_networks`` (n, N, C): each network's validation predictions of
    the same N images (a cross-validated run: one array of out-of-fold predictions, each by its
    own fold network), fitted on all of them at once."""
    n = len(val_networks)
    stacked = np.asarray(val_networks, dtype=np.float64).reshape(-1, val_networks.shape[-1])
    return Calibration(fit_temperature(stacked, np.tile(np.asarray(val_target), n)))


def fit_temperature(val_probs: np.ndarray, val_target: np.ndarray) -> float:
    """The temperature that minimises the validation NLL (never fitted on test)."""
    found = minimize_scalar(lambda t: nll(scaled(val_probs, t), val_target),
                            bounds=TEMPERATURES, method="bounded")
    best = float(found.x)
    # The bounded search may stop a hair off; never return a worse fit than no scaling.
    if nll(scaled(val_probs, best), val_target) > nll(val_probs, val_target):
        return 1.0
    return best


def reliability_diagram(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]],
                        positive: int | None, title: str) -> Path:
    """Observed frequency against mean predicted probability, one line per curve (name ->
    (probabilities, targets)), 15 equal-width bins."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfectly calibrated")
    for name, (probs, target) in curves.items():
        if probs.shape[1] == 2:
            pos = 1 if positive is None else positive
            y, p = target == pos, probs[:, pos]
        else:
            y, p = probs.argmax(axis=1) == target, probs.max(axis=1)
        if 0 < int(np.sum(y)) < len(y):
            freq, mean = calibration_curve(y, p, n_bins=BINS, strategy="uniform")
            ax.plot(mean, freq, marker="o", label=name)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
