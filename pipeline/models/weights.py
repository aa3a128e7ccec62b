"""Backbone weights: ImageNet through timm's cache, or a local state dict; never silently random.

A sweep that asked for pretrained weights and trained from random ones would be wrong without
any sign, so every failure to get the asked-for weights is a one-line PipelineError naming both
ways to get them (timm's cache, or ``backbone.weights_path``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import timm
import torch
from huggingface_hub import constants as hf_constants
from omegaconf import DictConfig
from timm.models import get_pretrained_cfg
from torch import Tensor, nn

from pipeline.common.errors import PipelineError
from pipeline.config import one_line
from pipeline.models.transfer import transfer_spec


def component_names(cfg: DictConfig) -> list[str]:
    """The timm model names a backbone config builds (several for a fused backbone)."""
    if cfg.get("components"):
        return list(cfg.components)
    return [cfg.timm_name]


def pretrained_tag(timm_name: str) -> str:
    """``arch.tag`` of the weights ``timm.create_model(timm_name, pretrained=True)`` loads."""
    pcfg = get_pretrained_cfg(timm_name)
    if pcfg is None:
        return timm_name
    return f"{pcfg.architecture}.{pcfg.tag}" if pcfg.tag else str(pcfg.architecture)


def describe_weights(cfg: DictConfig) -> str:
    """What the backbone starts from, as logged: random, imagenet:<tag>, file:<path>:sha256=<hex>,
    run:<run id> (the backbone of a logged run).

    Accepts the whole config or its ``backbone`` node. ``weights_path`` wins over ``pretrained``.
    """
    cfg = cfg.backbone if "backbone" in cfg else cfg
    spec = transfer_spec(cfg)
    if spec is not None:
        return spec  # run:<id>, the network of a logged run
    if cfg.get("weights_path"):
        path = Path(cfg.weights_path).expanduser()
        if not path.is_file():
            raise file_error(cfg, path, "no such file")
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        return f"file:{path}:sha256={digest[:12]}"
    if cfg.get("pretrained"):
        return "imagenet:" + "+".join(pretrained_tag(n) for n in component_names(cfg))
    return "random"


def weights_hint(cfg: DictConfig) -> str:
    """What a weights file for ``cfg`` holds when made from timm state dicts."""
    if cfg.get("components"):
        parts = " and ".join(f"{n}'s prefixed '{n}.'" for n in cfg.components)
        return f"the timm state dicts of {parts} in one file"
    return f"timm {cfg.timm_name}"


def require_published(cfg: DictConfig) -> None:
    """timm only logs a warning and hands back random weights when it has none: refuse instead."""
    for timm_name in component_names(cfg):
        pcfg = get_pretrained_cfg(timm_name)
        if pcfg is None or not (pcfg.hf_hub_id or pcfg.url or pcfg.file):
            raise PipelineError(
                f"ImageNet weights for {cfg.name} (timm {timm_name}) cannot be loaded: timm "
                f"publishes no pretrained weights for {timm_name}. Pass backbone.weights_path="
                f"<a local state dict file: {weights_hint(cfg)}>, or set "
                f"backbone.pretrained=false to train from random weights"
            )


def create_timm_model(cfg: DictConfig, timm_name: str, pretrained: bool) -> nn.Module:
    """``timm.create_model`` for one network of ``cfg``; with ``pretrained``, its ImageNet
    weights or a PipelineError at once (all parts are checked before any is downloaded)."""
    if not pretrained:
        return timm.create_model(timm_name, pretrained=False)
    require_published(cfg)
    label = f"{cfg.name} part {timm_name}" if cfg.get("components") else cfg.name
    pcfg = get_pretrained_cfg(timm_name)
    try:
        return timm.create_model(timm_name, pretrained=True)
    except Exception as exc:  # offline, no cache, corrupt download: all end the same way
        if pcfg.hf_hub_id:
            cache = f"Hugging Face hub cache, {hf_constants.HF_HUB_CACHE}"
        else:
            cache = f"torch hub cache, {Path(torch.hub.get_dir()) / 'checkpoints'}"
        raise PipelineError(
            f"ImageNet weights for {label} (timm {pretrained_tag(timm_name)}) could not be loaded: "
            f"{_short(one_line(exc))}. Either run once with internet access so timm caches them "
            f"({cache}), pass backbone.weights_path=<a local state dict file>, or set "
            f"backbone.pretrained=false to train from random weights"
        ) from exc


def file_error(cfg: DictConfig, path: Path, reason: str) -> PipelineError:
    """The one-line error for a weights file that cannot be used."""
    if cfg.get("components"):
        expected = f"the {cfg.name} backbone, a network built with it, or {weights_hint(cfg)}"
    else:
        expected = f"timm {cfg.timm_name} (classifier keys optional), its backbone or network"
    return PipelineError(
        f"Weights for {cfg.name} could not be loaded from backbone.weights_path={path}: "
        f"{_short(reason)}. Either pass backbone.weights_path=<a state dict of {expected}>, or "
        f"drop it and use backbone.pretrained=true after running once with internet access so "
        f"timm caches the ImageNet weights"
    )


def read_state_dict(cfg: DictConfig) -> dict[str, Tensor]:
    """The tensors in ``cfg.weights_path`` (torch.load, weights_only; ``state_dict`` unwrapped)."""
    path = Path(cfg.weights_path).expanduser()
    if not path.is_file():
        raise file_error(cfg, path, "no such file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise file_error(cfg, path, f"not a torch state dict ({one_line(exc)})") from exc
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise file_error(cfg, path, "the file holds no mapping of names to tensors")
    return dict(loaded)


def load_weights_file(
    backbone: nn.Module, timm_models: Mapping[str, nn.Module], cfg: DictConfig
) -> None:
    """Load ``cfg.weights_path`` into ``backbone``; every pretrained backbone key must be there.

    ``timm_models`` maps a key prefix to the timm model the backbone wraps: ``""`` for a single
    network, ``"<timm name>."`` for each part of a fused one. Accepted files: a state dict of
    the backbone itself (``stages.*``), of a network holding it (``backbone.stages.*``; head keys
    ignored), or of the timm model(s) under those prefixes (keys the features do not use, such
    as the classifier, may be present or absent; a fused backbone's new 1x1 convolution keeps
    its fresh initialisation).
    """
    path = Path(cfg.weights_path).expanduser()
    state = read_state_dict(cfg)
    if any(key.startswith("backbone.") for key in state):
        state = {
            k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")
        }
    if any(key.startswith("stages.") for key in state):
        targets = {"": backbone}
        required = set(backbone.state_dict())
        known = required
    else:
        targets = dict(timm_models)
        used = {id(t) for t in backbone.state_dict(keep_vars=True).values()}
        required, known = set(), set()
        for prefix, model in targets.items():
            for key, tensor in model.state_dict(keep_vars=True).items():
                known.add(prefix + key)
                if id(tensor) in used:
                    required.add(prefix + key)
    # BatchNorm fills in a missing batch counter itself (older torchvision files have none)
    missing = sorted(k for k in required - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - known)
    if missing or unexpected:
        raise file_error(cfg, path, _key_report(missing, unexpected))
    try:
        for prefix, target in targets.items():
            part = {
                k.removeprefix(prefix): v
                for k, v in state.items()
                if k in required and k.startswith(prefix)
            }
            target.load_state_dict(part, strict=False)
    except RuntimeError as exc:
        raise file_error(cfg, path, one_line(exc)) from exc


def _key_report(missing: Sequence[str], unexpected: Sequence[str]) -> str:
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
            parts.append(f"{len(keys)} {what} backbone keys, e.g. {', '.join(keys[:3])}{more}")
    return "; ".join(parts)


def _short(text: str, limit: int = 300) -> str:
    """A reason to embed mid-sentence: bounded, without its own final period."""
    text = text.rstrip(". ")
    return text if len(text) <= limit else text[: limit - 3] + "..."
