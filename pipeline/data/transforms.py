"""Training-time augmentation presets (conf/augmentation/*.yaml) as torchvision.transforms.v2.

They act on one uint8 (1, S, S) tensor and keep its dtype and shape: batches stay uint8 and the
model normalises them on the device.
"""

from __future__ import annotations

from omegaconf import DictConfig
from torchvision.transforms import v2

from pipeline.config.errors import ConfigError


def build_augmentation(aug_cfg: DictConfig | dict | None) -> v2.Transform | None:
    """The preset's transform, or None when it changes nothing (``none``, or all zeros)."""
    if aug_cfg is None or aug_cfg.get("name") == "none":
        return None
    rotation = float(aug_cfg.get("rotation", 0.0) or 0.0)
    translate = _pair(aug_cfg, "translate", (0.0, 0.0))
    scale = _pair(aug_cfg, "scale", (1.0, 1.0))
    shear = float(aug_cfg.get("shear", 0.0) or 0.0)
    hflip = float(aug_cfg.get("hflip", 0.0) or 0.0)
    brightness = float(aug_cfg.get("brightness", 0.0) or 0.0)
    contrast = float(aug_cfg.get("contrast", 0.0) or 0.0)
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
