"""Validation/test metrics from torchmetrics, named as MLflow logs them (``val_auroc`` ...).

Binary tasks score the configured positive class (sensitivity = its recall); multi-class tasks
report macro averages over classes (one-vs-rest for specificity, NPV and AUROC).
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics import classification as tmc

METRIC_NAMES = (
    "accuracy",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "npv",
    "f1",
    "auroc",
)


class ClassificationMetrics(nn.Module):
    """Accumulates probabilities and targets; ``compute()`` gives ``{prefix+name: value}``."""

    def __init__(self, num_classes: int, positive_index: int | None = None, prefix: str = "val_"):
        super().__init__()
        self.num_classes = num_classes
        self.prefix = prefix
        self.binary = num_classes == 2
        self.positive_index = 1 if positive_index is None else positive_index
        # Accuracy at argmax over all classes, and balanced accuracy = mean per-class recall.
        self.overall = MetricCollection(
            {
                "accuracy": tmc.MulticlassAccuracy(num_classes, average="micro"),
                "balanced_accuracy": tmc.MulticlassAccuracy(num_classes, average="macro"),
            }
        )
        if self.binary:
            self.per_class = MetricCollection(
                {
                    "sensitivity": tmc.BinaryRecall(),
                    "specificity": tmc.BinarySpecificity(),
                    "precision": tmc.BinaryPrecision(zero_division=0),
                    "npv": tmc.BinaryNegativePredictiveValue(zero_division=0),
                    "f1": tmc.BinaryF1Score(zero_division=0),
                    "auroc": tmc.BinaryAUROC(),
                }
            )
        else:
            kw = {"num_classes": num_classes, "average": "macro"}
            self.per_class = MetricCollection(
                {
                    "sensitivity": tmc.MulticlassRecall(**kw),
                    "specificity": tmc.MulticlassSpecificity(**kw),
                    "precision": tmc.MulticlassPrecision(**kw, zero_division=0),
                    "npv": tmc.MulticlassNegativePredictiveValue(**kw, zero_division=0),
                    "f1": tmc.MulticlassF1Score(**kw, zero_division=0),
                    "auroc": tmc.MulticlassAUROC(**kw),
                }
            )

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        probs = probs.detach().float()
        self.overall.update(probs, target)
        if self.binary:
            pos = self.positive_index
            self.per_class.update(probs[:, pos], (target == pos).long())
        else:
            self.per_class.update(probs, target)

    def compute(self) -> dict[str, float]:
        values = {**self.overall.compute(), **self.per_class.compute()}
        return {f"{self.prefix}{name}": float(values[name]) for name in METRIC_NAMES}

    def reset(self) -> None:
        self.overall.reset()
        self.per_class.reset()


def score(
    probs: torch.Tensor, target: torch.Tensor, positive_index: int | None, prefix: str
) -> dict[str, float]:
    """All metrics of one set of predictions at once (final evaluation of the best model)."""
    metrics = ClassificationMetrics(probs.shape[1], positive_index, prefix)
    metrics.update(probs, target)
    return metrics.compute()

