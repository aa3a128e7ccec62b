"""SupConLoss: hand-computed values, lower for class clusters, and it can be learned."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.models.losses import SupConLoss


def views(*samples: list[list[float]]) -> torch.Tensor:
    """(B, n_views, D) from per-sample lists of view vectors, L2-normalised."""
    return F.normalize(torch.tensor(samples, dtype=torch.float32), dim=-1)


def test_identical_embeddings_of_one_class() -> None:
    # 2 samples x 2 views, all four embeddings equal, one label: every logit is 1/T.
    # Each anchor has 3 others, all positive: log_prob = 1/T - log(3 e^{1/T}) = -log 3,
    # so the loss is log 3 whatever the temperature.
    features = views([[1, 0], [1, 0]], [[1, 0], [1, 0]])
    loss = SupConLoss(temperature=0.5)(features, torch.tensor([0, 0]))
    assert loss.item() == pytest.approx(math.log(3), rel=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_orthogonal_classes(temperature: float) -> None:
    # Sample 0 (label 0) has both views at e1, sample 1 (label 1) both at e2.
    # Anchor = a view of sample 0: its only positive is the other view (dot 1); the two
    # negatives have dot 0. log_prob = 1/T - log(e^{1/T} + 2), so the loss is
    # log(1 + 2 e^{-1/T}) for every anchor: 0.5514 at T=1, 0.2395 at T=0.5.
    features = views([[1, 0], [1, 0]], [[0, 1], [0, 1]])
    loss = SupConLoss(temperature=temperature)(features, torch.tensor([0, 1]))
    assert loss.item() == pytest.approx(math.log(1 + 2 * math.exp(-1 / temperature)), rel=1e-6)


def test_base_temperature_only_rescales() -> None:
    features = views([[1, 0], [1, 0]], [[0, 1], [0, 1]])
    labels = torch.tensor([0, 1])
    plain = SupConLoss(temperature=0.5)(features, labels)
    scaled = SupConLoss(temperature=0.5, base_temperature=0.07)(features, labels)
    assert scaled.item() == pytest.approx(plain.item() * 0.5 / 0.07, rel=1e-6)


def test_clustered_embeddings_score_lower_than_random() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(4)
    centres = F.normalize(torch.randn(4, 32, generator=gen), dim=1)
    noise = 0.05 * torch.randn(16, 2, 32, generator=gen)
    clustered = F.normalize(centres[labels][:, None, :] + noise, dim=-1)
    random = F.normalize(torch.randn(16, 2, 32, generator=gen), dim=-1)
    loss = SupConLoss(temperature=0.1)
    assert loss(clustered, labels) < loss(random, labels)


def test_large_logits_stay_finite() -> None:
    # 1/T = 1000: exp() of the raw logits would overflow without the max subtraction
    features = views([[1, 0], [0.6, 0.8]], [[0, 1], [0.8, 0.6]])
    loss = SupConLoss(temperature=0.001)(features, torch.tensor([0, 1]))
    assert torch.isfinite(loss)


def test_singleton_class_and_single_view() -> None:
    # one view each; label 2 has a single sample, so that anchor has no positive and is skipped
    features = F.normalize(torch.randn(5, 1, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    features.requires_grad_(True)
    loss = SupConLoss(temperature=0.1)(features, torch.tensor([0, 0, 1, 1, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(features.grad).all()
    alone = SupConLoss(temperature=0.1)(features[:3], torch.tensor([0, 1, 2]))
    assert alone.item() == 0.0


def test_short_optimisation_lowers_the_loss() -> None:
    # two separable classes in 16-d; a linear encoder learns to pull each class together
    torch.manual_seed(0)
    labels = torch.arange(2).repeat(16)
    inputs = torch.randn(32, 16) + 3.0 * F.one_hot(labels, 16).float()
    encoder = torch.nn.Linear(16, 8)
    criterion = SupConLoss(temperature=0.1)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.1)

    def loss() -> torch.Tensor:
        two_views = torch.stack([inputs, inputs + 0.1 * torch.randn_like(inputs)], dim=1)
        return criterion(F.normalize(encoder(two_views), dim=-1), labels)

    start = loss().item()
    for _ in range(50):
        optimizer.zero_grad()
        step = loss()
        step.backward()
        optimizer.step()
    assert loss().item() < 0.5 * start
