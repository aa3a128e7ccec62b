"""What a backbone config names, answered by timm alone: the stages ``freeze_depth`` counts and the
mean and std its weights expect (the native input size: the config's ``timm_input_size``
resolver, from the same timm data config). One source, so no config file lists them again.

Stage names come from the backbone's layout over an empty build on the ``meta`` device (no
memory, no weights: 10-60 ms a backbone, once per trial at most).
"""

from __future__ import annotations

import timm
import torch
from omegaconf import DictConfig
from timm.data import resolve_model_data_config
from torch import nn

from pipeline.models.backbones import stage_layout
from pipeline.models.fused import fused_stage_names
from pipeline.models.weights import component_names


def _layout_names(timm_name: str) -> tuple[str, ...]:
    with torch.device("meta"):
        model = timm.create_model(timm_name, pretrained=False)
    return tuple(name for name, _ in stage_layout(model))


def stage_names(backbone: DictConfig) -> list[str]:
    """The backbone's stages in forward order: ``freeze_depth=k`` freezes the first k."""
    names = component_names(backbone)
    if backbone.get("components"):
        return fused_stage_names(len(_layout_names(names[0])))
    return list(_layout_names(names[0]))


def stage_count(backbone: DictConfig) -> int:
    return len(stage_names(backbone))


def normalisation(model: nn.Module) -> tuple[list[float], list[float]]:
    """(mean, std) the timm model's weights expect (``resolve_model_data_config``)."""
    data = resolve_model_data_config(model)
    return list(data["mean"]), list(data["std"])
