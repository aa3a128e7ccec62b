"""Training-time augmentation presets (conf/augmentation/*.yaml), applied to whole batches.

A preset acts on a uint8 batch (B, 1, S, S) on the device the model runs on, draws its random
parameters per image, and keeps the dtype and shape: the model normalises the batch afterwards
(see pipeline.data.batch_jitter).
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from pipeline.common.errors import ConfigError
from pipeline.config.targets import instantiate
from pipeline.data.batch_jitter import BatchJitter


def build_augmentation(aug_cfg: DictConfig | dict | None) -> BatchJitter | None:
    """The preset's transform (its ``_target_``, instantiated by Hydra with the preset's keys; a
    plain mapping of those keys is a ``jitter``), or None when it changes nothing."""
    if aug_cfg is None or aug_cfg.get("name") == "none":
        return None
    if "_target_" in aug_cfg:
        return instantiate(aug_cfg)
    return jitter(**aug_cfg)


def jitter(
    *, name: str = "custom", rotation: float = 0.0, translate: Sequence[float] | None = None,
    scale: Sequence[float] | None = None, shear: float = 0.0, hflip: float = 0.0,
    brightness: float = 0.0, contrast: float = 0.0,
) -> BatchJitter | None:
    """Affine jitter, horizontal flip and intensity jitter (each 0 = off); None when all are off."""
    aug_cfg = {"name": name, "translate": translate, "scale": scale}
    rotation = float(rotation or 0.0)
    translate = _pair(aug_cfg, "translate", (0.0, 0.0))
    scale = _pair(aug_cfg, "scale", (1.0, 1.0))
    shear = float(shear or 0.0)
    hflip = float(hflip or 0.0)
    brightness = float(brightness or 0.0)
    contrast = float(contrast or 0.0)
    _check_range(aug_cfg, "hflip", hflip, 0.0, 1.0)
    _check_range(aug_cfg, "brightness", brightness, 0.0, 1.0)
    _check_range(aug_cfg, "contrast", contrast, 0.0, 1.0)

    if not (rotation or any(translate) or scale != (1.0, 1.0) or shear or hflip or brightness
            or contrast):
        return None
    return BatchJitter(rotation=rotation, translate=translate, scale=scale, shear=shear,
                       hflip=hflip, brightness=brightness, contrast=contrast)


def _pair(cfg: DictConfig | dict, key: str, default: tuple[float, float]) -> tuple[float, float]:
    value = cfg.get(key)
    if value is None:
        return default
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        values = []
    if len(values) != 2:
        raise ConfigError(f"augmentation.{key}={values} must be a pair [a, b]")
    return values[0], values[1]


def _check_range(cfg: DictConfig | dict, key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        name = cfg.get("name", "?")
        raise ConfigError(f"augmentation.{key}={value} (preset {name}) must be in [{low}, {high}]")
