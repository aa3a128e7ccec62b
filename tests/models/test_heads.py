"""Heads on fake feature maps (shapes, dropout, BatchNorm), and the network around them."""

from __future__ import annotations

import pytest
import torch
from omegaconf import DictConfig
from torch import nn

from pipeline.common.errors import ConfigError
from pipeline.config import compose
from pipeline.models import ChestXrayNet, ContrastiveChestXrayNet, build_head, build_model

CHANNELS, HW, CLASSES = 16, (3, 3), 4


def head_cfg(name: str, *overrides: str) -> DictConfig:
    return compose([f"head={name}", *overrides]).head


def feature_maps(batch: int = 8) -> torch.Tensor:
    return torch.randn(batch, CHANNELS, *HW, generator=torch.Generator().manual_seed(0))


def of_type(head: nn.Module, kind: type[nn.Module]) -> list[nn.Module]:
    return [m for m in head.modules() if isinstance(m, kind)]


@pytest.mark.parametrize("name", ["linear", "paper001", "paper003", "paper004"])
def test_output_shape(name: str) -> None:
    head = build_head(head_cfg(name), CHANNELS, HW, CLASSES)
    assert head(feature_maps()).shape == (8, CLASSES)
    assert head.eval()(feature_maps(batch=1)).shape == (1, CLASSES)


@pytest.mark.parametrize("name", ["linear", "paper001"])
def test_pooled_heads_dropout(name: str) -> None:
    head = build_head(head_cfg(name, "head.dropout=0.5"), CHANNELS, HW, CLASSES)
    assert [m.p for m in of_type(head, nn.Dropout)] == [0.5]
    x = feature_maps()
    torch.manual_seed(0)
    assert not torch.equal(head.train()(x), head(x))  # dropout resamples in train mode
    assert torch.equal(head.eval()(x), head(x))
    no_dropout = build_head(head_cfg(name, "head.dropout=0.0"), CHANNELS, HW, CLASSES)
    assert of_type(no_dropout, nn.Dropout) == []
    assert of_type(head, nn.Linear)[0].in_features == CHANNELS  # pooled, not flattened


def test_paper001_outputs_logits_not_probabilities() -> None:
    head = build_head(head_cfg("paper001"), CHANNELS, HW, CLASSES).eval()
    logits = head(feature_maps())
    assert not torch.allclose(logits.sum(dim=1), torch.ones(8))
    assert of_type(head, nn.Softmax) == []


def test_paper003_flattens_the_whole_map() -> None:
    head = build_head(head_cfg("paper003"), CHANNELS, HW, CLASSES)
    widths = [(m.in_features, m.out_features) for m in of_type(head, nn.Linear)]
    assert widths == [(CHANNELS * 9, 512), (512, 256), (256, CLASSES)]
    assert len(of_type(head, nn.ReLU)) == 2
    assert of_type(head, nn.Dropout) == []


def test_paper004_batchnorm_and_dropout() -> None:
    head = build_head(head_cfg("paper004"), CHANNELS, HW, CLASSES)
    widths = [(m.in_features, m.out_features) for m in of_type(head, nn.Linear)]
    assert widths == [(CHANNELS, 2500), (2500, CLASSES)]
    (norm,) = of_type(head, nn.BatchNorm1d)
    assert [m.p for m in of_type(head, nn.Dropout)] == [0.5]
    kinds = [type(m) for m in head]
    assert kinds.index(nn.ReLU) < kinds.index(nn.BatchNorm1d) < kinds.index(nn.Dropout)
    x = feature_maps()
    head.train()(x)
    assert norm.num_batches_tracked.item() == 1 and norm.running_mean.abs().sum() > 0
    stats = norm.running_mean.clone()
    head.eval()(x)
    assert torch.equal(norm.running_mean, stats)  # eval uses the running statistics
    assert torch.equal(head(x), head(x))


def test_a_head_without_a_factory_is_one_clear_error() -> None:
    cfg = head_cfg("linear", "head._target_=pipeline.models.heads.no_such_head")
    with pytest.raises(ConfigError, match="head=linear: .*no_such_head"):
        build_head(cfg, CHANNELS, HW, CLASSES)
    cfg = head_cfg("linear", "~head._target_")
    with pytest.raises(ConfigError, match="head=linear has no _target_"):
        build_head(cfg, CHANNELS, HW, CLASSES)


def net_cfg(*overrides: str) -> DictConfig:
    return compose(["backbone=resnet18", "dataset.image_size=64", *overrides])


def test_paper003_width_follows_image_size() -> None:
    for size, hw in ((64, 2), (96, 3)):
        net = build_model(net_cfg("head=paper003", f"dataset.image_size={size}"), CLASSES)
        assert net.head[1].in_features == 512 * hw * hw
        x = torch.randint(0, 256, (2, 1, size, size), dtype=torch.uint8)
        assert net(x).shape == (2, CLASSES)


def test_preprocess_grayscale_uint8_and_rgb_float_agree() -> None:
    net = build_model(net_cfg(), CLASSES).eval()
    gray = torch.randint(0, 256, (2, 1, 64, 64), dtype=torch.uint8)
    rgb = gray.float().repeat(1, 3, 1, 1)
    x = net.preprocess(gray)
    assert x.dtype == torch.float32 and x.shape == (2, 3, 64, 64)
    torch.testing.assert_close(x, net.preprocess(rgb))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(x, (gray.float() / 255 - mean) / std)
    assert {"mean", "std"} <= set(net.state_dict())  # a saved model carries its normalisation


def test_cached_frozen_features_finish_the_forward_pass() -> None:
    net = build_model(net_cfg("backbone.freeze_depth=3"), CLASSES).eval()
    x = torch.randint(0, 256, (2, 1, 64, 64), dtype=torch.uint8)
    cached = net.frozen_features(x)
    assert not cached.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(net.classify(net.features_from(cached, 3)), net(x))
        torch.testing.assert_close(net.features_from(net.preprocess(x)), net.forward_features(x))
    assert isinstance(net, ChestXrayNet) and not hasattr(net, "embed")
    assert net.projector is None
    assert net.weights == "random"
    assert net.trainable_params() < net.total_params()


def test_supcon_network_embeds() -> None:
    net = build_model(net_cfg("loss=supcon", "loss.projection_dim=32"), CLASSES)
    assert isinstance(net, ContrastiveChestXrayNet)
    features = net.forward_features(torch.randint(0, 256, (3, 1, 64, 64), dtype=torch.uint8))
    z = net.embed(features)
    assert z.shape == (3, 32)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3))
    linears = [m for m in net.projector.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 512), (512, 32)]


def test_num_classes_below_two() -> None:
    with pytest.raises(ConfigError, match="at least 2 classes"):
        build_model(net_cfg(), 1)
