"""Backbones as stages of a timm model's own modules, so the first k can be frozen and cached.

A backbone is the feature extractor only (timm's ``forward_features``: no pooling, no classifier).
Stage boundaries follow the reductions of timm's ``feature_info``; a stride-2 pooling that ends a
block stays with that block, so a cached stage output is as small as it can be.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import timm.models as tm
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from pipeline.common.errors import ConfigError

StageLayout = list[tuple[str, list[str]]]


class StagedBackbone(nn.Module):
    """A feature extractor split into stages; ``forward(x, start, end)`` runs ``stages[start:end]``.

    ``freeze(k)`` freezes the first k stages; they stay in eval mode (BatchNorm statistics and
    dropout fixed) even when the model is put in train mode, so their outputs can be cached.
    """

    def __init__(self, name: str, stages: Sequence[tuple[str, nn.Module]], out_channels: int):
        super().__init__()
        self.name = name
        self.stage_names = [stage_name for stage_name, _ in stages]
        self.stages = nn.ModuleList([module for _, module in stages])
        self.out_channels = out_channels
        self.freeze_depth = 0

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def forward(self, x: Tensor, start: int = 0, end: int | None = None) -> Tensor:
        for stage in self.stages[start:end]:
            x = stage(x)
        return x

    def freeze(self, depth: int) -> None:
        """Freeze stages[:depth] and unfreeze the rest (re-freezing a built model is cheap)."""
        n = self.num_stages
        if not 0 <= depth <= n:
            raise ConfigError(
                f"backbone.freeze_depth={depth} is out of range for {self.name}: use 0..{n} "
                f"(0 fine-tunes everything, {n} freezes the whole backbone; its stages are "
                f"{', '.join(self.stage_names)})"
            )
        for index, stage in enumerate(self.stages):
            stage.requires_grad_(index >= depth)
        self.freeze_depth = depth
        self.train(self.training)

    def train(self, mode: bool = True) -> StagedBackbone:
        super().train(mode)
        for stage in self.stages[: self.freeze_depth]:
            stage.eval()
        return self


def sequential(model: nn.Module, paths: Sequence[str]) -> nn.Sequential:
    """The model's own submodules at ``paths``, in order (shared, not copied)."""
    return nn.Sequential(
        OrderedDict((path.replace(".", "_"), model.get_submodule(path)) for path in paths)
    )


def _resnet(model: nn.Module) -> StageLayout:
    return [("stem", ["conv1", "bn1", "act1", "maxpool"])] + [
        (f"layer{i}", [f"layer{i}"]) for i in range(1, 5)
    ]


def _resnetv2(model: nn.Module) -> StageLayout:
    layout: StageLayout = [("stem", ["stem"])]
    layout += [(f"stage{i + 1}", [f"stages.{i}"]) for i in range(len(model.stages))]
    layout[-1][1].append("norm")
    return layout


def _densenet(model: nn.Module) -> StageLayout:
    f = "features"
    layout: StageLayout = [("stem", [f"{f}.conv0", f"{f}.norm0", f"{f}.pool0"])]
    for i in range(1, 5):
        tail = f"{f}.transition{i}" if i < 4 else f"{f}.norm5"
        layout.append((f"denseblock{i}", [f"{f}.denseblock{i}", tail]))
    return layout


def _vgg(model: nn.Module) -> StageLayout:
    """VGG's five conv blocks, each ending with its max-pool."""
    layout: StageLayout = []
    block: list[str] = []
    for index, module in enumerate(model.features):
        block.append(f"features.{index}")
        if isinstance(module, nn.MaxPool2d):
            layout.append((f"block{len(layout) + 1}", block))
            block = []
    if block:
        layout[-1][1].extend(block)
    return layout


def _efficientnet(model: nn.Module) -> StageLayout:
    """EfficientNet and MobileNetV2 (timm EfficientNet): the head conv belongs to the features."""
    return _mobile_blocks(model, ["conv_head", "bn2"])


def _mobilenetv3(model: nn.Module) -> StageLayout:
    """MobileNetV3 runs its conv_head after pooling (forward_head): not a feature stage."""
    return _mobile_blocks(model, [])


def _mobile_blocks(model: nn.Module, tail: list[str]) -> StageLayout:
    """Blocks grouped at the reductions 2, 4, 8, 16, 32 that timm's feature_info taps."""
    taps = [int(info["module"].split(".")[1]) for info in model.feature_info]
    layout: StageLayout = []
    first = 0
    for last in taps:
        blocks = [f"blocks.{i}" for i in range(first, last + 1)]
        layout.append((f"blocks{first}" if first == last else f"blocks{first}_{last}", blocks))
        first = last + 1
    layout[0] = ("stem_blocks0", ["conv_stem", "bn1", *layout[0][1]])
    layout[-1][1].extend(tail)
    return layout


def _inception_v3(model: nn.Module) -> StageLayout:
    return [
        ("stem1", ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Pool1"]),
        ("stem2", ["Conv2d_3b_1x1", "Conv2d_4a_3x3", "Pool2"]),
        ("mixed_5", ["Mixed_5b", "Mixed_5c", "Mixed_5d"]),
        ("mixed_6", [f"Mixed_6{c}" for c in "abcde"]),
        ("mixed_7", ["Mixed_7a", "Mixed_7b", "Mixed_7c"]),
    ]


def _xception(model: nn.Module) -> StageLayout:
    """Keras flows; entry block3 (to 728 channels) joins the middle flow, as feature_info taps."""
    return [
        ("stem", ["conv1", "bn1", "act1", "conv2", "bn2", "act2"]),
        ("entry_block1", ["block1"]),
        ("entry_block2", ["block2"]),
        ("middle_flow", [f"block{i}" for i in range(3, 12)]),
        ("exit_flow", ["block12", "conv3", "bn3", "act3", "conv4", "bn4", "act4"]),
    ]


LAYOUTS: dict[type[nn.Module], Callable[[nn.Module], StageLayout]] = {
    tm.ResNet: _resnet,
    tm.ResNetV2: _resnetv2,
    tm.DenseNet: _densenet,
    tm.VGG: _vgg,
    tm.EfficientNet: _efficientnet,
    tm.MobileNetV3: _mobilenetv3,
    tm.InceptionV3: _inception_v3,
    tm.Xception: _xception,
}


def stage_layout(model: nn.Module) -> StageLayout:
    """Stage names and the timm module paths each stage runs, in forward_features order."""
    for cls, layout in LAYOUTS.items():
        if type(model) is cls:
            return layout(model)
    known = ", ".join(cls.__name__ for cls in LAYOUTS)
    raise ConfigError(f"no stage layout for timm {type(model).__name__}: supported are {known}")


def staged_from_timm(model: nn.Module, name: str) -> StagedBackbone:
    """Wrap a timm model's feature modules as stages (the modules are shared with ``model``)."""
    stages = [(stage_name, sequential(model, paths)) for stage_name, paths in stage_layout(model)]
    return StagedBackbone(name, stages, out_channels=model.num_features)


def check_input_size(cfg: DictConfig, image_size: int) -> None:
    """Valid-padding stems shrink small images to nothing; say so before building."""
    minimum = int(cfg.get("min_input_size") or 1)
    if image_size < minimum:
        raise ConfigError(
            f"dataset.image_size={image_size} is too small for {cfg.name}: "
            f"use at least {minimum} (its native size is {cfg.get('input_size', '?')})"
        )


@torch.no_grad()
def feature_size(backbone: nn.Module, image_size: int) -> tuple[int, int]:
    """(H, W) of the last feature map at ``image_size``, from a one-image eval-mode pass."""
    was_training = backbone.training
    backbone.eval()
    try:
        param = next(backbone.parameters())
        dummy = torch.zeros(1, 3, image_size, image_size, device=param.device, dtype=param.dtype)
        height, width = backbone(dummy).shape[-2:]
    finally:
        backbone.train(was_training)
    return int(height), int(width)
