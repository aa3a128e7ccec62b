"""Training-time augmentation presets (conf/augmentation/*.yaml) as torchvision.transforms.v2.

They act on one uint8 (1, S, S) tensor and keep its dtype and shape: batches stay uint8 and the
model normalises them on the device.
"""

from __future__ import annotations

from collections.abc import Sequence

import hydra
from omegaconf import DictConfig
from torchvision.transforms import v2

from pipeline.common.errors import ConfigError


def build_augmentation(aug_cfg: DictConfig | dict | None) -> v2.Transform | None:
    """The preset's transform (its ``_target_``, instantiated by Hydra with the preset's keys; a
    plain mapping of those keys is a ``jitter``), or None when it changes nothing."""
    if aug_cfg is None or aug_cfg.get("name") == "none":
        return None
    if "_target_" in aug_cfg:
        return hydra.utils.instantiate(aug_cfg)
    return jitter(**aug_cfg)


def jitter(
    *, name: str = "custom", rotation: float = 0.0, translate: Sequence[float] | None = None,
    scale: Sequence[float] | None = None, shear: float = 0.0, hflip: float = 0.0,
    brightness: float = 0.0, contrast: float = 0.0,
) -> v2.Transform | None:
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

    steps: list[v2.Transform] = []
    if rotation or any(translate) or scale != (1.0, 1.0) or shear:
        steps.append(
            v2.RandomAffine(
                degrees=rotation,
                translate=translate if any(translate) else None,
                scale=scale if scale != (1.0, 1.0) else None,
                shear=shear or None,
                interpolation=v2.InterpolationMode.BILINEAR,
                fill=0,  # the black of a radiograph's border
            )
        )
    if hflip:
        steps.append(v2.RandomHorizontalFlip(p=hflip))
    if brightness or contrast:
        steps.append(v2.ColorJitter(brightness=brightness or None, contrast=contrast or None))
    if not steps:
        return None
    return v2.Compose(steps)


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
