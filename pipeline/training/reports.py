"""Figures and reports of one trained model: confusion matrix, ROC, curves, classification report.

The figures follow paper 001 (train-vs-validation loss and accuracy per epoch) and the usual
clinical read-out (confusion matrix, ROC). scikit-learn computes, matplotlib draws.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    ConfusionMatrixDisplay,
    RocCurveDisplay,
    classification_report,
    confusion_matrix,
)


def write_reports(
    out_dir: Path,
    probs: np.ndarray,
    target: np.ndarray,
    classes: Sequence[str],
    positive_index: int | None,
    prefix: str = "",
    pred: np.ndarray | None = None,
) -> list[Path]:
    """Confusion matrix and ROC as PNG, classification report as text and JSON; ``pred``: the
    labels given at an operating point (default: the most probable class)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = list(range(len(classes)))
    pred = probs.argmax(axis=1) if pred is None else np.asarray(pred)
    written = []

    cm = confusion_matrix(target, pred, labels=labels)
    fig, ax = plt.subplots(figsize=(4 + len(classes) * 0.6, 3.5 + len(classes) * 0.6))
    ConfusionMatrixDisplay(cm, display_labels=list(classes)).plot(ax=ax, colorbar=False)
    ax.set_title(f"{prefix}confusion matrix".strip())
    written.append(_save(fig, out_dir / f"{prefix}confusion_matrix.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    if len(classes) == 2:
        pos = 1 if positive_index is None else positive_index
        RocCurveDisplay.from_predictions(
            target == pos, probs[:, pos], name=classes[pos], ax=ax, plot_chance_level=True
        )
    else:
        for k, name in enumerate(classes):
            if 0 < int((target == k).sum()) < len(target):
                RocCurveDisplay.from_predictions(target == k, probs[:, k], name=name, ax=ax)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_title(f"{prefix}ROC".strip())
    written.append(_save(fig, out_dir / f"{prefix}roc_curve.png"))

    report_kw = {"labels": labels, "target_names": list(classes), "zero_division": 0}
    text = classification_report(target, pred, digits=4, **report_kw)
    (out_dir / f"{prefix}classification_report.txt").write_text(text)
    as_dict = classification_report(target, pred, output_dict=True, **report_kw)
    (out_dir / f"{prefix}classification_report.json").write_text(json.dumps(as_dict, indent=2))
    written += [
        out_dir / f"{prefix}classification_report.txt",
        out_dir / f"{prefix}classification_report.json",
    ]
    return written


def write_curves(out_dir: Path, history: Mapping[str, Sequence[float]]) -> list[Path]:
    """Paper 001's figures: loss and accuracy per epoch, training against validation."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in ("loss", "accuracy"):
        fig, ax = plt.subplots(figsize=(6, 4))
        for split in ("train", "val"):
            values = history.get(f"{split}_{kind}", [])
            if values:
                ax.plot(range(1, len(values) + 1), values, marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(kind)
        ax.set_title(f"model {kind}")
        ax.legend()
        ax.grid(alpha=0.3)
        written.append(_save(fig, out_dir / f"{kind}_curve.png"))
    return written


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
