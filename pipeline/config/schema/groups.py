"""The groups with several options: backbone, loss, augmentation, optimizer, scheduler. Each has
the schema its options share and those of options that add keys. Types here, values in
conf/<group>/<option>.yaml. A ``_target_`` takes only the callables the
project calls: a config file or a logged run cannot make instantiate load anything else."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from omegaconf import MISSING

from pipeline.config.schema.kinds import Number

# Called with the parameter groups or the optimizer by pipeline.training.module.
Partial = Annotated[bool, Literal[True]]


@dataclass
class Backbone:
    name: str = MISSING
    timm_name: str | None = MISSING
    input_size: int = MISSING
    min_input_size: int = MISSING
    freeze_depth: int = MISSING  # 0..stages: pipeline.models.backbones knows the stages
    pretrained: bool | str = MISSING  # auto, true or false: resolved (and checked) by compose
    weights_path: str | None = MISSING
    weights: str | None = None  # run:<RUN_ID> | run:champion: the backbone of a logged run


@dataclass
class FusedBackbone(Backbone):
    components: list[str] = MISSING
    fuse_channels: int = MISSING


@dataclass
class CrossEntropy:
    name: str = MISSING
    class_weights: bool = MISSING
    label_smoothing: Number = MISSING


@dataclass
class SupCon(CrossEntropy):
    mode: Annotated[str, Literal["joint", "two_stage"]] = MISSING
    weight: Number = MISSING
    temperature: Number = MISSING
    projection_dim: int = MISSING
    pretrain_epochs: int = MISSING


@dataclass
class NoAugmentation:
    name: str = MISSING


@dataclass
class Jitter(NoAugmentation):
    # Their ranges are the transform's (pipeline.data.transforms checks its arguments).
    _target_: Annotated[str, Literal["pipeline.data.transforms.jitter"]] = MISSING
    rotation: Number = MISSING
    translate: list[float] = MISSING
    scale: list[float] = MISSING
    shear: Number = MISSING
    hflip: Number = MISSING
    brightness: Number = MISSING
    contrast: Number = MISSING


@dataclass
class Optimizer:
    _target_: Annotated[
        str, Literal["torch.optim.Adam", "torch.optim.AdamW", "torch.optim.SGD"]
    ] = MISSING
    _partial_: Partial = MISSING
    fused: bool = MISSING  # torch's fused step: other numbers than a per-tensor loop's
    lr: Number = MISSING
    weight_decay: Number = MISSING


@dataclass
class MomentumOptimizer(Optimizer):
    momentum: Number = MISSING
    nesterov: bool = MISSING


@dataclass
class NoSchedule:
    name: str = MISSING


@dataclass
class CosineLR:
    _target_: Annotated[str, Literal["torch.optim.lr_scheduler.CosineAnnealingLR"]] = MISSING
    _partial_: Partial = MISSING
    T_max: int = MISSING


@dataclass
class PlateauLR:
    _target_: Annotated[str, Literal["torch.optim.lr_scheduler.ReduceLROnPlateau"]] = MISSING
    _partial_: Partial = MISSING
    mode: str = MISSING  # trainer.monitor_mode
    factor: Number = MISSING
    patience: int = MISSING


@dataclass
class Cosine(NoSchedule):
    scheduler: CosineLR = field(default_factory=CosineLR)


@dataclass
class Plateau(NoSchedule):
    scheduler: PlateauLR = field(default_factory=PlateauLR)


# The schemas an option names when its keys go beyond its group's (the root types the group).
EXTENDED = {
    "backbone": {"fused": FusedBackbone},
    "loss": {"supcon": SupCon},
    "augmentation": {"jitter": Jitter},
    "optimizer": {"momentum": MomentumOptimizer},
    "scheduler": {"cosine": Cosine, "plateau": Plateau},
}
