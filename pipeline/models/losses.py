"""Supervised contrastive loss (Khosla et al. 2020), paper 000."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SupConLoss(nn.Module):
    """L_out of Khosla et al. 2020: for every anchor, the mean over its positives of
    ``-log(exp(z_a . z_p / T) / sum_{k != a} exp(z_a . z_k / T))``, averaged over anchors.

    Every view of every sample is an anchor; positives are the other views of the same sample
    and all views of samples with the same label. ``base_temperature`` (default: the
    temperature) only rescales the loss, as in the reference implementation. An anchor with
    no positive (a single-view sample alone in its class) is left out of the mean rather than
    turning it into NaN.
    """

    def __init__(self, temperature: float = 0.1, base_temperature: float | None = None):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.base_temperature = float(base_temperature or temperature)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """``features`` (B, n_views, D) L2-normalised (or (B, D) for one view); ``labels`` (B,)."""
        if features.dim() == 2:
            features = features.unsqueeze(1)
        if features.dim() != 3 or labels.shape != features.shape[:1]:
            raise ValueError(
                f"expected features (B, n_views, D) and labels (B,), got "
                f"{tuple(features.shape)} and {tuple(labels.shape)}"
            )
        batch, views, _ = features.shape
        # view-major stacking: row v * B + i is view v of sample i
        z = features.transpose(0, 1).reshape(batch * views, -1)
        label = labels.repeat(views)
        logits = z @ z.T / self.temperature
        # subtracting the row max leaves log-softmax unchanged and keeps exp() finite
        logits = logits - logits.max(dim=1, keepdim=True).values.detach()

        not_self = ~torch.eye(batch * views, dtype=torch.bool, device=z.device)
        positive = (label[:, None] == label[None, :]) & not_self
        log_denominator = torch.logsumexp(logits.masked_fill(~not_self, float("-inf")), dim=1)
        log_prob = logits - log_denominator[:, None]

        n_positive = positive.sum(dim=1)
        has_positive = n_positive > 0
        if not has_positive.any():
            return features.sum() * 0.0  # nothing to contrast; keeps the graph for backward
        mean_log_prob = (log_prob * positive).sum(dim=1)[has_positive] / n_positive[has_positive]
        return -(self.temperature / self.base_temperature) * mean_log_prob.mean()
