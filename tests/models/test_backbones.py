"""Every backbone: stages equal timm's forward_features, split forwards compose, freezing holds.

Each network is built once per module (at a tiny size) and re-frozen in place, to stay fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import timm
import torch
from omegaconf import DictConfig
from timm.models import get_pretrained_cfg
from torch import Tensor, nn

from pipeline.common.errors import ConfigError
from pipeline.config import compose
from pipeline.models import ChestXrayNet, build_model
from pipeline.models.catalog import stage_count, stage_names

BACKBONES = [
    "xception",
    "vgg16",
    "vgg19",
    "resnet18",
    "resnet50",
    "resnet152v2",
    "densenet121",
    "inception_v3",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "resnet50_resnet152v2_concat",
]
NUM_CLASSES = 3
SEED = 0


@dataclass
class Built:
    cfg: DictConfig
    net: ChestXrayNet
    size: int
    reference: Callable[[Tensor], Tensor]  # timm forward_features of identically seeded models


def backbone_cfg(name: str, *overrides: str) -> DictConfig:
    return compose([f"backbone={name}", *overrides])


def tiny_size(cfg: DictConfig) -> int:
    return max(32, int(cfg.backbone.min_input_size))


def timm_reference(cfg: DictConfig, net: ChestXrayNet) -> Callable[[Tensor], Tensor]:
    """timm models created under the same seed as build_model's, so their weights are equal."""
    torch.manual_seed(SEED)
    b = cfg.backbone
    models = [timm.create_model(n).eval() for n in (b.get("components") or [b.timm_name])]
    if not b.get("components"):
        return models[0].forward_features

    def fused(x: Tensor) -> Tensor:
        maps = []
        for model, branch in zip(models, net.backbone.stages[0].branches, strict=True):
            renorm = branch[0]  # the fixed affine in front of the branch's stem
            mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
            std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1)
            pixels = x * net.std + net.mean  # the fused input's own normalisation undone
            torch.testing.assert_close(renorm(x), (pixels - mean) / std)
            maps.append(model.forward_features(renorm(x)))
        return net.backbone.stages[-1](torch.cat(maps, dim=1))  # the 1x1 fusion conv

    return fused


@pytest.fixture(scope="module", params=BACKBONES)
def built(request: pytest.FixtureRequest) -> Built:
    cfg = backbone_cfg(request.param)
    size = tiny_size(cfg)
    cfg = backbone_cfg(request.param, f"dataset.image_size={size}")
    torch.manual_seed(SEED)
    net = build_model(cfg, NUM_CLASSES)
    return Built(cfg, net, size, timm_reference(cfg, net))


def images(built: Built, batch: int = 2, seed: int = 1) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 1, built.size, built.size), generator=gen).to(torch.uint8)


def bn_stats(module: nn.Module) -> list[Tensor]:
    return [m.running_mean.clone() for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def test_stage_names_match_config(built: Built) -> None:
    backbone = built.net.backbone
    # The one source of a backbone's stages (what freeze_depth counts, what the sweep's `max` is)
    # names exactly the stages the built network runs.
    assert backbone.stage_names == stage_names(built.cfg.backbone)
    assert built.net.num_stages == stage_count(built.cfg.backbone) >= 5
    features = built.net.eval().forward_features(images(built))
    assert features.shape[1] == backbone.out_channels


def test_staged_forward_equals_timm_forward_features(built: Built) -> None:
    net = built.net.eval()
    x = net.preprocess(images(built))
    with torch.no_grad():
        torch.testing.assert_close(net.backbone(x), built.reference(x), rtol=1e-5, atol=1e-5)


def test_split_forward_equals_full_forward(built: Built) -> None:
    backbone = built.net.eval().backbone
    x = built.net.preprocess(images(built))
    with torch.no_grad():
        full = backbone(x)
        for k in range(backbone.num_stages + 1):
            head = backbone(x, 0, k)
            cached = head.clone()
            torch.testing.assert_close(backbone(head, k), full, rtol=1e-5, atol=1e-5)
            assert torch.equal(head, cached), f"stage {k} changed its (cacheable) input in place"


def test_predicts_probabilities(built: Built) -> None:
    net = built.net.eval()
    with torch.no_grad():
        probs = net(images(built, batch=3)).softmax(dim=1)
    assert probs.shape == (3, NUM_CLASSES)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(3))


def test_minimum_input_size(built: Built) -> None:
    minimum = int(built.cfg.backbone.min_input_size)
    backbone = built.net.eval().backbone
    with torch.no_grad():
        assert backbone(torch.zeros(1, 3, minimum, minimum)).shape[1] == backbone.out_channels
        if minimum > 1:
            with pytest.raises(RuntimeError):
                backbone(torch.zeros(1, 3, minimum - 1, minimum - 1))
    if minimum > 1:
        cfg = backbone_cfg(built.cfg.backbone.name, f"dataset.image_size={minimum - 1}")
        with pytest.raises(ConfigError, match=f"use at least {minimum} "):
            build_model(cfg, NUM_CLASSES)


def test_out_of_range_freeze_depth(built: Built) -> None:
    net, n = built.net, built.net.num_stages
    name = built.cfg.backbone.name
    for depth in (-1, n + 1):
        with pytest.raises(ConfigError) as err:
            net.set_freeze_depth(depth)
        assert str(err.value) == (
            f"backbone.freeze_depth={depth} is out of range for {name}: use 0..{n} "
            f"(0 fine-tunes everything, {n} freezes the whole backbone; its stages are "
            f"{', '.join(stage_names(built.cfg.backbone))})"
        )
    net.set_freeze_depth(0)


def test_every_freeze_depth_trains_one_batch(built: Built) -> None:
    """Runs last on each network (training drifts its weights).

    Deepest first: the stages frozen at depth k were frozen at every depth tried before, so
    one snapshot of the initial weights and BatchNorm statistics serves every check."""
    net, x = built.net, images(built)
    labels = torch.tensor([0, 1])
    stages = net.backbone.stages
    initial_params = [[p.detach().clone() for p in stage.parameters()] for stage in stages]
    initial_stats = [bn_stats(stage) for stage in stages]
    counts = []
    for depth in reversed(range(net.num_stages + 1)):
        net.set_freeze_depth(depth)
        net.train()
        frozen = stages[:depth]
        assert all(not m.training for stage in frozen for m in stage.modules())
        head_before = net.head[-1].weight.detach().clone()
        trainable = [p for p in net.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(trainable, lr=1e-3)
        net.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x), labels)
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
        assert all(p.grad is None for p in frozen.parameters())
        assert all(p.grad is not None for p in net.head.parameters())
        assert not torch.equal(net.head[-1].weight, head_before)
        for index in range(depth):
            for old, new in zip(initial_params[index], stages[index].parameters(), strict=True):
                assert torch.equal(old, new)
            for old, new in zip(initial_stats[index], bn_stats(stages[index]), strict=True):
                assert torch.equal(old, new)
        counts.append(net.trainable_params())
    assert counts[-1] == net.total_params()
    assert all(a < b for a, b in zip(counts, counts[1:], strict=False)), counts


def test_freeze_depth_from_config() -> None:
    cfg = backbone_cfg("densenet121", "backbone.freeze_depth=7", "dataset.image_size=32")
    with pytest.raises(ConfigError) as err:
        build_model(cfg, NUM_CLASSES)
    assert str(err.value) == (
        "backbone.freeze_depth=7 is out of range for densenet121: use 0..5 "
        "(0 fine-tunes everything, 5 freezes the whole backbone; its stages are stem, "
        "denseblock1, denseblock2, denseblock3, denseblock4)"
    )
    cfg = backbone_cfg("resnet18", "backbone.freeze_depth=3", "dataset.image_size=32")
    net = build_model(cfg, NUM_CLASSES)
    assert net.freeze_depth == 3
    assert not any(p.requires_grad for p in net.backbone.stages[:3].parameters())
    assert all(p.requires_grad for p in net.backbone.stages[3:].parameters())


@pytest.mark.parametrize("name", BACKBONES)
def test_normalisation_is_timm_pretrained_cfg(name: str) -> None:
    """The fused backbone takes its input as its first network (ResNet50) expects it."""
    b = backbone_cfg(name).backbone
    cfg = backbone_cfg(name, f"dataset.image_size={max(32, int(b.min_input_size))}")
    pcfg = get_pretrained_cfg(b.components[0] if b.get("components") else b.timm_name)
    net = build_model(cfg, NUM_CLASSES)
    assert net.mean.flatten().tolist() == pytest.approx(pcfg.mean)
    assert net.std.flatten().tolist() == pytest.approx(pcfg.std)
    assert b.input_size == pcfg.input_size[-1]


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKBONES)
def test_native_size_forward_backward(name: str) -> None:
    size = int(backbone_cfg(name).backbone.input_size)
    net = build_model(backbone_cfg(name, f"dataset.image_size={size}"), NUM_CLASSES).train()
    x = torch.randint(0, 256, (2, 1, size, size), dtype=torch.uint8)
    logits = net(x)
    assert logits.shape == (2, NUM_CLASSES)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    assert all(p.grad is not None for p in net.parameters())
