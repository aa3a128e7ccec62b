"""The selection report's figures, each a PNG in memory: every backbone's test ROC (the champion
boldest), reliability diagrams, confusion matrices at the operating point, each study's
optimisation history, and a Grad-CAM gallery of the champion's test images."""

from __future__ import annotations

import io
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix, roc_curve  # noqa: E402

from pipeline.evidence.calibration import reliability_diagram  # noqa: E402
from pipeline.selection.assessment import Assessed  # noqa: E402

GALLERY = 3  # test images of each kind (true positive, false positive, false negative)


def png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def _positive_scores(item: Assessed) -> tuple[np.ndarray, np.ndarray]:
    """(truth, score) of the ROC: the positive class (binary), one-vs-rest pooled (otherwise)."""
    ev, probs = item.evaluation, item.served.probs
    pos = 1 if ev.positive_index is None else ev.positive_index
    if probs.shape[1] == 2:
        return ev.target == pos, probs[:, pos]
    onehot = np.eye(probs.shape[1], dtype=bool)[ev.target]
    return onehot.ravel(), probs.ravel()


def roc_figure(assessed: Sequence[Assessed]) -> bytes:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for i, item in enumerate(assessed):
        truth, score = _positive_scores(item)
        if 0 < truth.sum() < len(truth):
            fpr, tpr, _ = roc_curve(truth, score)
            auroc = item.test.values.get("auroc", float("nan"))
            ax.plot(fpr, tpr, lw=3.0 if i == 0 else 1.2, alpha=1.0 if i == 0 else 0.8,
                    label=f"{item.backbone}{' (champion)' if i == 0 else ''}: AUROC {auroc:.3f}")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("test ROC of every backbone")
    ax.legend(loc="lower right", fontsize=8)
    return png(fig)


def reliability_figure(assessed: Sequence[Assessed]) -> bytes:
    """Every model as served; the champion also unscaled, when it is calibrated."""
    champion = assessed[0]
    curves = {item.backbone: (item.served.probs, item.evaluation.target) for item in assessed}
    if champion.temperature is not None:
        curves[f"{champion.backbone}, unscaled"] = (champion.evaluation.probs,
                                                    champion.evaluation.target)
    with tempfile.TemporaryDirectory() as tmp:
        path = reliability_diagram(Path(tmp) / "r.png", curves,
                                   champion.evaluation.positive_index, "reliability on test")
        return path.read_bytes()


def confusion_figure(item: Assessed) -> bytes:
    ev = item.evaluation
    pred = item.served.labels
    cm = confusion_matrix(ev.target, pred, labels=list(range(len(ev.classes))))
    size = 3 + 0.5 * len(ev.classes)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(cm, display_labels=ev.classes).plot(ax=ax, colorbar=False)
    where = f" at threshold {item.threshold:.3f}" if item.threshold is not None else ""
    ax.set_title(f"{item.backbone}{where}", fontsize=9)
    return png(fig)


def history_figure(study: Any) -> bytes | None:
    from optuna.visualization import matplotlib as ovm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ax = ovm.plot_optimization_history(study)
        except (ValueError, RuntimeError):
            return None
    fig = ax.figure
    fig.set_size_inches(6.5, 4)
    ax.set_title(f"optimisation history: {study.study_name}")
    return png(fig)


def gallery(item: Assessed, net: Any) -> list[tuple[str, bytes]]:
    """Grad-CAM overlays of a few true positives, false positives and false negatives (for a
    multi-class task: correct and wrong); (caption, PNG) each."""
    from PIL import Image

    from pipeline.inference.gradcam import grad_cam, overlay

    ev, probs = item.evaluation, item.served.probs
    pred = item.served.labels
    pos = 1 if ev.positive_index is None else ev.positive_index
    if ev.probs.shape[1] == 2:
        kinds = {"true positive": (ev.target == pos) & (pred == pos),
                 "false positive": (ev.target != pos) & (pred == pos),
                 "false negative": (ev.target == pos) & (pred != pos)}
    else:
        kinds = {"correct": pred == ev.target, "wrong": pred != ev.target}
    out = []
    for kind, mask in kinds.items():
        for row in np.flatnonzero(mask)[:GALLERY]:
            pixels = ev.pixels[row]
            cam, _ = grad_cam(net, pixels)
            shown = max(pixels.shape[0], 192)
            big = np.asarray(Image.fromarray(pixels).resize((shown, shown),
                                                            Image.Resampling.BILINEAR))
            image = Image.fromarray(overlay(big, cam))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            # Binary: always the positive class's probability, against the threshold that
            # labelled it (the larger probability would be the other class's for a negative).
            if item.threshold is not None:  # binary: thresholds exist for two classes only
                value, threshold = _apart(float(probs[row, pos]), float(item.threshold))
                shown_p = f"p({ev.classes[pos]})={value}, threshold {threshold}"
            else:
                shown_p = f"p({ev.classes[pred[row]]})={probs[row, pred[row]]:.2f}"
            caption = f"{kind}: {ev.files[row]} ({shown_p}, truth {ev.classes[ev.target[row]]})"
            out.append((caption, buffer.getvalue()))
    return out


def _apart(value: float, threshold: float) -> tuple[str, str]:
    """Both to 3 decimals, or to as many more as tell them apart: a caption that read
    "false negative (p=0.531, threshold 0.531)" would contradict itself."""
    for digits in range(3, 10):
        shown = f"{value:.{digits}f}", f"{threshold:.{digits}f}"
        if shown[0] != shown[1]:
            return shown
    return shown
