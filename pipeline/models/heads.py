"""Classifier heads on the last feature map (``head=``), and the SupCon projection MLP.

Every head outputs logits; softmax is left to prediction time (and to the loss, which applies
log-softmax itself), so the heads the papers describe "with softmax" end at their last Linear.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from pipeline.config.errors import ConfigError


def _pool() -> list[nn.Module]:
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten()]


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


def linear_head(
    cfg: DictConfig, in_channels: int, feature_hw: Sequence[int], classes: int
) -> nn.Module:
    """Global average pooling -> dropout(head.dropout) -> Linear to the classes."""
    return nn.Sequential(*_pool(), _dropout(cfg.dropout), nn.Linear(in_channels, classes))


def paper001_head(
    cfg: DictConfig, in_channels: int, feature_hw: Sequence[int], classes: int
) -> nn.Module:
    """Paper 001: pool -> FC -> softmax; outputs logits, softmax is applied at prediction time."""
    return linear_head(cfg, in_channels, feature_hw, classes)


def paper003_head(
    cfg: DictConfig, in_channels: int, feature_hw: Sequence[int], classes: int
) -> nn.Module:
    """Paper 003: flatten the whole map -> 512 ReLU -> 256 ReLU -> classes.

    The first Linear's width depends on the map size, hence on dataset.image_size.
    """
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_channels * int(feature_hw[0]) * int(feature_hw[1])
    for hidden in cfg.hidden:
        layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True), _dropout(cfg.dropout)]
        width = hidden
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


def paper004_head(
    cfg: DictConfig, in_channels: int, feature_hw: Sequence[int], classes: int
) -> nn.Module:
    """Paper 004: global pooling -> Linear 2500 -> ReLU -> BatchNorm1d -> dropout 0.5 -> classes."""
    return nn.Sequential(
        *_pool(),
        nn.Linear(in_channels, cfg.hidden),
        nn.ReLU(inplace=True),
        nn.BatchNorm1d(cfg.hidden),
        _dropout(cfg.dropout),
        nn.Linear(cfg.hidden, classes),
    )


HEADS: dict[str, Callable[[DictConfig, int, Sequence[int], int], nn.Module]] = {
    "linear": linear_head,
    "paper001": paper001_head,
    "paper003": paper003_head,
    "paper004": paper004_head,
}


def build_head(
    head_cfg: DictConfig, in_channels: int, feature_hw: Sequence[int], num_classes: int
) -> nn.Module:
    """The configured head for a (in_channels, *feature_hw) map; outputs (B, num_classes) logits."""
    if head_cfg.name not in HEADS:
        raise ConfigError(f"head={head_cfg.name} is unknown: use one of {', '.join(HEADS)}")
    return HEADS[head_cfg.name](head_cfg, in_channels, feature_hw, num_classes)


class Projection(nn.Module):
    """SupCon projection (Khosla et al. 2020): pool -> Linear -> ReLU -> Linear, L2-normalised.

    The contrastive loss is computed on this projection, not on the classifier's input, as in
    the paper; the hidden width is the backbone's channel count.
    """

    def __init__(self, in_channels: int, projection_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(
            *_pool(),
            nn.Linear(in_channels, in_channels),
            nn.ReLU(inplace=True),
            nn.Linear(in_channels, projection_dim),
        )

    def forward(self, feature_map: Tensor) -> Tensor:
        return F.normalize(self.mlp(feature_map), dim=1)
