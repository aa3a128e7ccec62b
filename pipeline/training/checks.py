"""Settings under which a training's numbers would not mean what they say: refused (or warned
about) before anything trains, each with the fix in one line."""

from __future__ import annotations

import warnings

from omegaconf import DictConfig

from pipeline.common.errors import ConfigError
from pipeline.models.weights import describe_weights


class DoubleBalancingWarning(UserWarning):
    """Two settings correct the same class imbalance."""


def check_training(cfg: DictConfig) -> None:
    """Every rule below; the first broken one raises ConfigError."""
    refuse_bad_settings(cfg)
    warn_double_balancing(cfg)


def refuse_bad_settings(cfg: DictConfig) -> None:
    """The refusals alone: an entry point calls them before it opens a run, so bad input
    stores nothing."""
    check_frozen_weights(cfg)
    check_contrastive_views(cfg)
    check_devices(cfg)


def check_frozen_weights(cfg: DictConfig) -> None:
    """A frozen stage of random weights (with its initial BatchNorm statistics) is a random
    feature extractor that never learns: refused."""
    depth = int(cfg.backbone.freeze_depth)
    if depth > 0 and describe_weights(cfg.backbone) == "random":
        raise ConfigError(
            f"backbone.freeze_depth={depth} would freeze {depth} stage(s) of random weights "
            f"(backbone.pretrained=false, no backbone.weights_path): use "
            "backbone.pretrained=true or backbone.weights_path=<a state dict file>, or "
            "backbone.freeze_depth=0"
        )


def check_contrastive_views(cfg: DictConfig) -> None:
    """SupCon contrasts two views of each image; with no augmentation they are the same pixels,
    and the loss only teaches the network that an image equals itself."""
    if cfg.loss.name == "supcon" and str(cfg.augmentation.get("name")) == "none":
        raise ConfigError(
            "loss=supcon contrasts two augmented views of each image, but augmentation=none "
            "makes them identical: choose augmentation=light, augmentation=paper or "
            "augmentation=strong (or loss=cross_entropy)"
        )


def check_devices(cfg: DictConfig) -> None:
    """One training runs on one device: several would each log, keep weights and write the
    model. Several GPUs serve a sweep as one worker each."""
    devices = cfg.trainer.devices
    if str(devices) in ("1", "[0]") or (isinstance(devices, list) and len(devices) == 1):
        return
    raise ConfigError(
        f"trainer.devices={devices}: a training runs on one device; to use several GPUs, run "
        "one sweep worker per GPU: make sweep GPUS=0,1,... (each worker sees its own GPU)"
    )


def warn_double_balancing(cfg: DictConfig) -> None:
    if cfg.loss.get("class_weights") and str(cfg.dataset.get("sampler")) == "weighted":
        warnings.warn(
            "loss.class_weights=true and dataset.sampler=weighted both correct the class "
            "imbalance, so rare classes count twice over: keep one (loss.class_weights=false "
            "or dataset.sampler=none)",
            DoubleBalancingWarning,
            stacklevel=3,
        )
