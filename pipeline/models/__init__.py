"""CNNs for chest X-ray classification: timm backbones split into freezable stages, plus heads."""

from pipeline.models.backbones import StagedBackbone
from pipeline.models.heads import build_head
from pipeline.models.network import (
    ChestXrayNet,
    ContrastiveChestXrayNet,
    build_backbone,
    build_model,
)
from pipeline.models.weights import describe_weights

__all__ = [
    "ChestXrayNet",
    "ContrastiveChestXrayNet",
    "StagedBackbone",
    "build_backbone",
    "build_head",
    "build_model",
    "describe_weights",
]
