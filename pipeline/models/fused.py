"""Paper 002's fused backbone: several timm networks on the same image, last maps concatenated.

The branches run stage by stage in lockstep (they share reductions), and the tensor between two
stages is the channel-concatenation of the branch outputs, so the fused backbone is a plain
StagedBackbone whose frozen-stage outputs can be cached like any other. The last stage is the
1x1 fusion convolution (no activation), kept apart so the branches can be frozen while it trains.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pipeline.models.backbones import StagedBackbone, sequential, stage_layout


class ChannelAffine(nn.Module):
    """Fixed per-channel ``x * scale + shift``: re-normalises the fused input for one branch."""

    def __init__(self, scale: Sequence[float], shift: Sequence[float]):
        super().__init__()
        self.register_buffer("scale", torch.tensor(scale).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor(shift).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift


class ParallelStage(nn.Module):
    """One stage of every branch: split the concatenated input by channels, run, concatenate."""

    def __init__(self, branches: Sequence[nn.Module], in_channels: Sequence[int] | None):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        # None: every branch sees the whole input (the first stage, on the image itself)
        self.in_channels = list(in_channels) if in_channels is not None else None

    def forward(self, x: Tensor) -> Tensor:
        if self.in_channels is None:
            inputs: Sequence[Tensor] = [x] * len(self.branches)
        else:
            inputs = torch.split(x, self.in_channels, dim=1)
        return torch.cat(
            [branch(part) for branch, part in zip(self.branches, inputs, strict=True)], dim=1
        )


def renormalisation(
    mean: Sequence[float],
    std: Sequence[float],
    branch_mean: Sequence[float],
    branch_std: Sequence[float],
) -> nn.Module:
    """Map an input normalised with (mean, std) to one normalised with the branch's own."""
    if list(mean) == list(branch_mean) and list(std) == list(branch_std):
        return nn.Identity()
    scale = [s / bs for s, bs in zip(std, branch_std, strict=True)]
    shift = [(m - bm) / bs for m, bm, bs in zip(mean, branch_mean, branch_std, strict=True)]
    return ChannelAffine(scale, shift)


def fused_stage_names(depth: int) -> list[str]:
    """Names of a fused backbone's stages over networks of ``depth`` stages each, then ``fuse``."""
    return ["stem", *(f"stage{i}" for i in range(1, depth)), "fuse"]


def fused_from_timm(
    models: Sequence[nn.Module],
    name: str,
    mean: Sequence[float],
    std: Sequence[float],
    fuse_channels: int,
) -> StagedBackbone:
    """Stage i runs stage i of every model; a last ``fuse`` stage is the 1x1 convolution.

    ``mean``/``std`` are the fused input's normalisation (the first network's); each model's own
    (from its timm pretrained_cfg) is restored by a fixed affine in front of its stem.
    """
    branches = []
    for model in models:
        own = model.pretrained_cfg
        affine = renormalisation(mean, std, own["mean"], own["std"])
        stages = [sequential(model, paths) for _, paths in stage_layout(model)]
        stages[0] = nn.Sequential(affine, *stages[0])
        branches.append(stages)
    depth = len(branches[0])
    if any(len(stages) != depth for stages in branches):
        raise ValueError(f"{name}: the fused networks have different numbers of stages")
    channels = [_stage_channels(stages) for stages in branches]
    names = fused_stage_names(depth)
    staged = [
        (
            names[i],
            ParallelStage(
                [stages[i] for stages in branches],
                None if i == 0 else [ch[i - 1] for ch in channels],
            ),
        )
        for i in range(depth)
    ]
    concat = sum(ch[-1] for ch in channels)
    staged.append(("fuse", nn.Conv2d(concat, fuse_channels, kernel_size=1)))
    return StagedBackbone(name, staged, out_channels=fuse_channels)


@torch.no_grad()
def _stage_channels(stages: Sequence[nn.Module]) -> list[int]:
    """Output channels of each stage, from one small eval-mode pass (no registry to ask)."""
    modes = [stage.training for stage in stages]
    counts = []
    x = torch.zeros(1, 3, 128, 128)
    for stage in stages:
        stage.eval()
        x = stage(x)
        counts.append(int(x.shape[1]))
    for stage, mode in zip(stages, modes, strict=True):
        stage.train(mode)
    return counts
