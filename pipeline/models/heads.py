"""Classifier heads on the last feature map (``head=``), and the SupCon projection MLP.

Every head outputs logits; softmax is left to prediction time (and to the loss, which applies
log-softmax itself), so the heads the papers describe "with softmax" end at their last Linear.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from hydra.errors import InstantiationException
from omegaconf import DictConfig
from torch import Tensor, nn

from pipeline.common.errors import ConfigError, one_line
from pipeline.config.targets import instantiate


def _pool() -> list[nn.Module]:
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten()]


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


def linear_head(
    in_channels: int, feature_hw: Sequence[int], classes: int, *, name: str = "linear",
    dropout: float = 0.0,
) -> nn.Module:
    """Global average pooling -> dropout(head.dropout) -> Linear to the classes."""
    return nn.Sequential(*_pool(), _dropout(dropout), nn.Linear(in_channels, classes))


def flatten_mlp_head(
    in_channels: int, feature_hw: Sequence[int], classes: int, *, name: str = "paper003",
    hidden: Sequence[int] = (512, 256), dropout: float = 0.0,
) -> nn.Module:
    """Paper 003: flatten the whole map -> 512 ReLU -> 256 ReLU -> classes.

    The first Linear's width depends on the map size, hence on dataset.image_size.
    """
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_channels * int(feature_hw[0]) * int(feature_hw[1])
    for size in hidden:
        layers += [nn.Linear(width, int(size)), nn.ReLU(inplace=True), _dropout(dropout)]
        width = int(size)
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


def pooled_bn_head(
    in_channels: int, feature_hw: Sequence[int], classes: int, *, name: str = "paper004",
    hidden: int = 2500, dropout: float = 0.5,
) -> nn.Module:
    """Paper 004: global pooling -> Linear 2500 -> ReLU -> BatchNorm1d -> dropout 0.5 -> classes."""
    return nn.Sequential(
        *_pool(),
        nn.Linear(in_channels, int(hidden)),
        nn.ReLU(inplace=True),
        nn.BatchNorm1d(int(hidden)),
        _dropout(dropout),
        nn.Linear(int(hidden), classes),
    )


def build_head(
    head_cfg: DictConfig, in_channels: int, feature_hw: Sequence[int], num_classes: int
) -> nn.Module:
    """The configured head (its ``_target_``, instantiated by Hydra with the head's keys) for a
    (in_channels, *feature_hw) map; it outputs (B, num_classes) logits."""
    name = head_cfg.get("name", "?")
    if "_target_" not in head_cfg:
        raise ConfigError(f"head={name} has no _target_: give conf/head/{name}.yaml one, e.g. "
                          "_target_: pipeline.models.heads.linear_head")
    try:
        factory = instantiate(head_cfg, _partial_=True)
    except InstantiationException as exc:
        raise ConfigError(f"head={name}: {one_line(exc)}") from exc
    return factory(in_channels, feature_hw, num_classes)


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
