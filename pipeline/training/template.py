"""The untrained network, built once per process and copied per run; memory freed between runs."""

from __future__ import annotations

import copy
import gc
import json
import os

import torch
from omegaconf import DictConfig, OmegaConf

from pipeline.models import ChestXrayNet, build_model

# One untrained network and the RNG state its build left, keyed on everything the build reads
# (backbone, head, loss, image size, classes, seed, the weights file's size and mtime).
_TEMPLATE: dict[str, tuple[ChestXrayNet, torch.Tensor]] = {}


def build_net(cfg: DictConfig, num_classes: int) -> ChestXrayNet:
    """``build_model`` once per process for a given architecture and seed, then copies.

    Call right after seeding: a copy of the untrained network built last (under the same seed)
    comes back with the RNG as that build left it, so later draws (dropout, shuffling) are those
    of a fresh build. The freeze depth is applied to the copy, so a sweep over it reuses one
    build; pre-trained weights are read once.
    """
    key = _template_key(cfg, num_classes)
    if key not in _TEMPLATE:
        _TEMPLATE.clear()  # one template at a time: memory stays one untrained network
        net = build_model(cfg, num_classes)
        _TEMPLATE[key] = (net, torch.get_rng_state())
    template, rng_after_build = _TEMPLATE[key]
    net = copy.deepcopy(template)
    torch.set_rng_state(rng_after_build)
    net.set_freeze_depth(int(cfg.backbone.freeze_depth))
    return net


def _template_key(cfg: DictConfig, num_classes: int) -> str:
    backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
    backbone.pop("freeze_depth", None)
    path = backbone.get("weights_path")
    if path and os.path.exists(path):
        stat = os.stat(path)
        backbone["weights_file"] = [stat.st_size, stat.st_mtime_ns]
    return json.dumps({
        "backbone": backbone,
        "head": OmegaConf.to_container(cfg.head, resolve=True),
        "loss": OmegaConf.to_container(cfg.loss, resolve=True),
        "image_size": int(cfg.dataset.image_size),
        "num_classes": int(num_classes),
        "seed": int(cfg.seed),
    }, sort_keys=True, default=str)


def free_memory() -> None:
    """Between trials: drop the last model's memory (a CUDA OOM must not doom the next trial).

    What survives a trial (imported modules, the data bundle, the study) is then frozen out of
    the cycle collector: a full collection over it took 0.4 s per trial, and the next trial's
    garbage is still collected (gc.freeze only skips objects that exist now).
    """
    gc.collect()
    gc.freeze()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
