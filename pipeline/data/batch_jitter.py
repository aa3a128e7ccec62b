"""The augmentation presets applied to a whole batch at once, on the device it lives on.

A batch of uint8 images (B, 1, S, S) gets, per image, its own random affine warp (rotation,
translation in whole pixels, zoom, horizontal shear, about the centre, bilinear, black fill),
horizontal flip, then brightness and contrast factors: what torchvision's RandomAffine,
RandomHorizontalFlip and ColorJitter do to one image, with the same parameter ranges.
Hand-written because torchvision's v2 transforms draw one set of parameters per call (the whole
batch would move alike), and per-image calls cost a CPU about a millisecond each: here the
parameters are drawn for the batch in one go from a seeded generator on the CPU (the same
numbers on any device), one affine grid and one grid_sample warp every image, and the intensity
steps are broadcasts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_DRAWS = 8  # random numbers per image: angle, dx, dy, zoom, shear, flip, brightness, contrast


class BatchJitter:
    """Affine jitter, horizontal flip and intensity jitter, drawn per image (each 0 = off)."""

    def __init__(self, *, rotation: float = 0.0, translate: tuple[float, float] = (0.0, 0.0),
                 scale: tuple[float, float] = (1.0, 1.0), shear: float = 0.0, hflip: float = 0.0,
                 brightness: float = 0.0, contrast: float = 0.0) -> None:
        self.rotation = float(rotation)
        self.translate = (float(translate[0]), float(translate[1]))
        self.scale = (float(scale[0]), float(scale[1]))
        self.shear = float(shear)
        self.hflip = float(hflip)
        self.brightness = float(brightness)
        self.contrast = float(contrast)

    @property
    def warps(self) -> bool:
        return bool(self.rotation or any(self.translate) or self.scale != (1.0, 1.0)
                    or self.shear or self.hflip)

    def __repr__(self) -> str:
        keys = ("rotation", "translate", "scale", "shear", "hflip", "brightness", "contrast")
        return f"BatchJitter({', '.join(f'{k}={getattr(self, k)}' for k in keys)})"

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B, 1, S, S) uint8 in, the same shape and dtype out; ``generator`` (on the CPU) makes
        the draws repeatable."""
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"expected a (B, C, H, W) uint8 batch, got {images.dtype} "
                             f"{tuple(images.shape)}")
        n = images.shape[0]
        u = torch.rand((n, _DRAWS), generator=generator, dtype=torch.float64)
        x = images.float()
        if self.warps:
            theta = self._theta(u, images.shape[-2], images.shape[-1]).to(images.device)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False)
        if self.brightness:
            factor = _uniform(u[:, 6], max(0.0, 1 - self.brightness), 1 + self.brightness)
            x = x.mul_(_per_image(factor, x)).clamp_(0, 255)
        if self.contrast:
            factor = _per_image(_uniform(u[:, 7], max(0.0, 1 - self.contrast),
                                         1 + self.contrast), x)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = x.mul_(factor).add_(mean * (1 - factor)).clamp_(0, 255)
        return x.round_().to(torch.uint8)

    def _theta(self, u: Tensor, height: int, width: int) -> Tensor:
        """(B, 2, 3) float32: each output pixel's source, in affine_grid's [-1, 1] coordinates;
        torchvision's inverse affine matrix about the centre, then the flip."""
        angle = torch.deg2rad(_uniform(u[:, 0], -self.rotation, self.rotation))
        tx = torch.round(_uniform(u[:, 1], -1, 1) * self.translate[0] * width)
        ty = torch.round(_uniform(u[:, 2], -1, 1) * self.translate[1] * height)
        zoom = _uniform(u[:, 3], *self.scale)
        shear = torch.deg2rad(_uniform(u[:, 4], -self.shear, self.shear))
        # R(angle) * S(zoom) * ShearX(shear), inverted; in pixels about the centre.
        a, c = torch.cos(angle), torch.sin(angle)
        b = -torch.cos(angle) * torch.tan(shear) - torch.sin(angle)
        d = -torch.sin(angle) * torch.tan(shear) + torch.cos(angle)
        inverse = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2)
        inverse = inverse / zoom[:, None, None]
        shift = -(inverse @ torch.stack([tx, ty], -1)[:, :, None])[:, :, 0]
        # Pixels to [-1, 1]: x / (W / 2) on both sides of the map.
        half = torch.tensor([width / 2, height / 2], dtype=torch.float64)
        theta = torch.cat([inverse * half[None, None, :] / half[None, :, None],
                           (shift / half)[:, :, None]], dim=-1)
        flip = u[:, 5] < self.hflip
        theta[flip, :, 0] *= -1  # the flipped output's column x is the unflipped one's -x
        return theta.float()


def _uniform(u: Tensor, low: float, high: float) -> Tensor:
    return low + (high - low) * u


def _per_image(values: Tensor, like: Tensor) -> Tensor:
    return values.to(device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)

