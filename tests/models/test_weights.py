"""Weights: local state dicts load exactly; every way of not getting them is a one-line error."""

from __future__ import annotations

import hashlib
from pathlib import Path

import huggingface_hub.constants
import pytest
import timm
import torch
from omegaconf import DictConfig

from pipeline.common.errors import PipelineError
from pipeline.config import compose
from pipeline.models import build_model, describe_weights

SIZE = 32
FUSED = "resnet50_resnet152v2_concat"


def cfg_for(backbone: str, *overrides: str) -> DictConfig:
    return compose([f"backbone={backbone}", f"dataset.image_size={SIZE}", *overrides])


def save(state: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save(state, path)
    return path


def assert_one_line_naming_both_ways(err: pytest.ExceptionInfo[PipelineError]) -> str:
    text = str(err.value)
    assert "\n" not in text
    assert "backbone.weights_path=" in text and "internet access" in text
    return text


@pytest.mark.parametrize("with_classifier", [True, False])
def test_timm_state_dict_loads(tmp_path: Path, with_classifier: bool) -> None:
    torch.manual_seed(123)  # not build_model's seed: loaded weights must differ from random ones
    source = timm.create_model("resnet18")
    state = source.state_dict()
    if not with_classifier:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    path = save(state, tmp_path / "resnet18.pt")
    torch.manual_seed(0)
    net = build_model(cfg_for("resnet18", f"backbone.weights_path={path}"), 3)
    expected = [p for name, p in source.named_parameters() if not name.startswith("fc.")]
    loaded = list(net.backbone.parameters())
    assert len(loaded) == len(expected)
    for got, want in zip(loaded, expected, strict=True):
        assert torch.equal(got, want)
    bn_means = [m.running_mean for m in net.backbone.modules() if hasattr(m, "running_mean")]
    assert torch.equal(bn_means[0], source.bn1.running_mean)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert net.weights == f"file:{path}:sha256={digest}"


def test_network_and_backbone_state_dicts_load(tmp_path: Path) -> None:
    """The same path serves the fused backbone, whose files can only be of these two kinds."""
    torch.manual_seed(123)
    source = build_model(cfg_for("resnet18", "head=paper004"), 3)
    backbone_state = source.backbone.state_dict()
    network = save(source.state_dict(), tmp_path / "network.pt")
    backbone = save(backbone_state, tmp_path / "backbone.pt")
    for path in (network, backbone):
        torch.manual_seed(0)
        loaded = build_model(cfg_for("resnet18", f"backbone.weights_path={path}"), 3)
        assert_same_state(loaded.backbone.state_dict(), backbone_state)


def test_fused_from_timm_parts(tmp_path: Path) -> None:
    torch.manual_seed(123)
    parts = {n: timm.create_model(n) for n in ("resnet50", "resnetv2_152")}
    merged = {f"{n}.{k}": v for n, model in parts.items() for k, v in model.state_dict().items()}
    from_parts = save(merged, tmp_path / "parts.pt")
    net = build_model(cfg_for(FUSED, f"backbone.weights_path={from_parts}"), 3)
    for index, (name, model) in enumerate(parts.items()):
        loaded = [
            p for stage in net.backbone.stages[:5] for p in stage.branches[index].parameters()
        ]
        classifier = model.pretrained_cfg["classifier"]
        wanted = [p for n, p in model.named_parameters() if not n.startswith(classifier)]
        assert len(loaded) == len(wanted), name
        assert all(torch.equal(a, b) for a, b in zip(loaded, wanted, strict=True)), name


def assert_same_state(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in got)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pt"
    with pytest.raises(PipelineError) as err:
        build_model(cfg_for("resnet18", f"backbone.weights_path={missing}"), 3)
    text = assert_one_line_naming_both_ways(err)
    assert f"backbone.weights_path={missing}: no such file" in text


def test_wrong_architecture(tmp_path: Path) -> None:
    path = save(timm.create_model("mobilenetv2_100").state_dict(), tmp_path / "mobilenet.pt")
    with pytest.raises(PipelineError) as err:
        build_model(cfg_for("resnet18", f"backbone.weights_path={path}"), 3)
    text = assert_one_line_naming_both_ways(err)
    assert "missing backbone keys, e.g. conv1.weight, layer1." in text
    assert "unexpected backbone keys, e.g. blocks." in text


def test_mismatched_shapes(tmp_path: Path) -> None:
    state = timm.create_model("resnet18").state_dict()
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    path = save(state, tmp_path / "gray_resnet18.pt")
    with pytest.raises(PipelineError) as err:
        build_model(cfg_for("resnet18", f"backbone.weights_path={path}"), 3)
    assert "size mismatch for conv1.weight" in assert_one_line_naming_both_ways(err)


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not weights")
    with pytest.raises(PipelineError) as err:
        build_model(cfg_for("resnet18", f"backbone.weights_path={path}"), 3)
    assert "not a torch state dict" in assert_one_line_naming_both_ways(err)


@pytest.fixture
def offline_empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No network and an empty Hugging Face cache (the hub reads its settings at import)."""
    home = tmp_path / "hf"
    home.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(home / "hub"))
    return home


def test_pretrained_offline_is_an_error_not_random_weights(offline_empty_hub: Path) -> None:
    with pytest.raises(PipelineError) as err:
        build_model(cfg_for("densenet121", "backbone.pretrained=true"), 3)
    text = assert_one_line_naming_both_ways(err)
    assert text.startswith(
        "ImageNet weights for densenet121 (timm densenet121.ra_in1k) could not be loaded: "
    )
    assert f"Hugging Face hub cache, {offline_empty_hub / 'hub'}" in text


@pytest.mark.parametrize("backbone", ["resnet152v2", FUSED])
def test_pretrained_without_published_weights(offline_empty_hub: Path, backbone: str) -> None:
    with pytest.raises(PipelineError) as err:
        build_model(cfg_for(backbone, "backbone.pretrained=true"), 3)
    text = str(err.value)
    assert "\n" not in text
    assert f"ImageNet weights for {backbone} (timm resnetv2_152) cannot be loaded" in text
    assert "timm publishes no pretrained weights for resnetv2_152" in text
    assert "backbone.weights_path=<a local state dict file: " in text
    assert not list(offline_empty_hub.rglob("*.safetensors"))  # nothing fetched for resnet50


def test_describe_weights(tmp_path: Path) -> None:
    assert describe_weights(cfg_for("densenet121")) == "random"
    assert describe_weights(cfg_for("densenet121", "backbone.pretrained=true")) == (
        "imagenet:densenet121.ra_in1k"
    )
    assert describe_weights(cfg_for("xception", "backbone.pretrained=true").backbone) == (
        "imagenet:legacy_xception.tf_in1k"
    )
    path = tmp_path / "w.pt"
    path.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()[:12]
    both = cfg_for("densenet121", "backbone.pretrained=true", f"backbone.weights_path={path}")
    assert describe_weights(both) == f"file:{path}:sha256={digest}"  # the file wins
