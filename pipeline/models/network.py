"""The classifier the pipeline trains: preprocessing + staged backbone + head (+ SupCon projection).

Preprocessing lives inside the network (buffers for mean/std), so a logged model takes the data
layer's uint8 grayscale images as they are and needs nothing else to predict.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from pipeline.common.errors import ConfigError
from pipeline.config import state_dir
from pipeline.models.backbones import (
    StagedBackbone,
    check_input_size,
    feature_size,
    staged_from_timm,
)
from pipeline.models.catalog import normalisation
from pipeline.models.fused import fused_from_timm
from pipeline.models.heads import Projection, build_head
from pipeline.models.transfer import load_transfer, transfer_file, transfer_run
from pipeline.models.weights import (
    component_names,
    create_timm_model,
    describe_weights,
    load_weights_file,
)


class ChestXrayNet(nn.Module):
    """Images (B, 1|3, S, S), uint8 or float in [0, 255] -> logits (B, num_classes).

    For a feature cache: ``frozen_features(x)`` is what stages[:freeze_depth] give (computed
    once), and ``classify(features_from(cached, freeze_depth))`` finishes the forward pass.
    """

    def __init__(
        self,
        backbone: StagedBackbone,
        head: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        weights: str,
    ):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.projector: nn.Module | None = None
        self.weights = weights
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    @property
    def freeze_depth(self) -> int:
        return self.backbone.freeze_depth

    @property
    def num_stages(self) -> int:
        return self.backbone.num_stages

    def set_freeze_depth(self, depth: int) -> None:
        """Freeze the first ``depth`` backbone stages (ConfigError when out of range)."""
        self.backbone.freeze(depth)

    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def total_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def preprocess(self, x: Tensor) -> Tensor:
        """[0, 255] images, 1 or 3 channels -> float, grayscale repeated to RGB, normalised."""
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images (B, 1|3, H, W), got shape {tuple(x.shape)}")
        x = x.to(self.mean.dtype) / 255.0
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))

    def forward_features(self, x: Tensor) -> Tensor:
        """The backbone's last feature map for raw images."""
        return self.backbone(self.preprocess(x))

    def features_from(self, h: Tensor, start: int = 0) -> Tensor:
        """The last feature map from stages[start:]: ``h`` is a preprocessed image batch
        (start=0) or the output of stages[:start], e.g. read from a feature cache."""
        return self.backbone(h, start)

    @torch.no_grad()
    def frozen_features(self, x: Tensor) -> Tensor:
        """Output of the frozen stages for raw images: what a feature cache stores."""
        return self.backbone(self.preprocess(x), 0, self.freeze_depth)

    def classify(self, feature_map: Tensor) -> Tensor:
        """Logits from a last feature map."""
        return self.head(feature_map)


class ContrastiveChestXrayNet(ChestXrayNet):
    """A ChestXrayNet with the SupCon projection (built when ``loss=supcon``)."""

    def __init__(self, *args: object, projection_dim: int, **kwargs: object):
        super().__init__(*args, **kwargs)
        self.projector = Projection(self.backbone.out_channels, projection_dim)

    def embed(self, feature_map: Tensor) -> Tensor:
        """L2-normalised projection (B, projection_dim) of a last feature map."""
        return self.projector(feature_map)


def build_backbone(cfg: DictConfig, state: Path | None = None
                   ) -> tuple[StagedBackbone, list[float], list[float]]:
    """The configured backbone (``cfg`` is the ``backbone`` node), weights loaded and frozen,
    with the input mean and std its (first) timm network expects (``state``: the state
    directory, where a run's backbone for ``backbone.weights=run:<id>`` is kept)."""
    from_file = bool(cfg.get("weights_path"))
    run_id = transfer_run(cfg)
    pretrained = bool(cfg.get("pretrained")) and not from_file and run_id is None
    names = component_names(cfg)
    models = [create_timm_model(cfg, name, pretrained) for name in names]
    mean, std = normalisation(models[0])
    if cfg.get("components"):
        backbone = fused_from_timm(models, cfg.name, mean, std, cfg.fuse_channels)
    else:
        backbone = staged_from_timm(models[0], cfg.name)
    if from_file:
        prefixes = [f"{n}." for n in names] if cfg.get("components") else [""]
        load_weights_file(backbone, dict(zip(prefixes, models, strict=True)), cfg)
    if run_id is not None:
        if state is None:
            raise ConfigError(f"backbone.weights=run:{run_id} needs the state directory")
        load_transfer(backbone, transfer_file(state, run_id), cfg, run_id)
    backbone.freeze(int(cfg.freeze_depth))
    return backbone, mean, std


def build_model(cfg: DictConfig, num_classes: int) -> ChestXrayNet:
    """Network for ``cfg.backbone``, ``cfg.head``, ``cfg.loss`` at ``cfg.dataset.image_size``."""
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got num_classes={num_classes}")
    image_size = int(cfg.dataset.image_size)
    check_input_size(cfg.backbone, image_size)
    state = state_dir(cfg) if transfer_run(cfg.backbone) else None
    backbone, mean, std = build_backbone(cfg.backbone, state)
    head = build_head(
        cfg.head, backbone.out_channels, feature_size(backbone, image_size), num_classes
    )
    args = (backbone, head, mean, std, describe_weights(cfg.backbone))
    if cfg.loss.name == "supcon":
        return ContrastiveChestXrayNet(*args, projection_dim=int(cfg.loss.projection_dim))
    return ChestXrayNet(*args)
