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
            x = F.grid_sample(x, _affine_grid(theta, *images.shape[-2:]), mode="bilinear",
                              padding_mode="zeros", align_corners=False)
        if self.brightness:  # x >= 0: a warp of uint8 values with black fill
            factor = _uniform(u[:, 6], max(0.0, 1 - self.brightness), 1 + self.brightness)
            x = x.mul_(_per_image(factor, x)).clamp_max_(255)
        gain, offset = torch.ones((), device=x.device), torch.zeros((), device=x.device)
        if self.contrast:  # towards the image's mean
            gain = _per_image(_uniform(u[:, 7], max(0.0, 1 - self.contrast),
                                       1 + self.contrast), x)
            offset = x.mean(dim=(1, 2, 3), keepdim=True) * (1 - gain)
        # gain * x + offset, clamped to [0, 255] and rounded half up, in three passes.
        return torch.addcmul(offset + 0.5, x, gain).clamp_(0.5, 255.5).to(torch.uint8)

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


def _affine_grid(theta: Tensor, height: int, width: int) -> Tensor:
    """F.affine_grid(theta, (B, C, H, W), align_corners=False), as the sum of a per-column and a
    per-row term: the same grid ten times faster on a CPU than its (H*W, 3) x (3, 2) products."""
    xs = (torch.arange(width, dtype=theta.dtype, device=theta.device) * 2 + 1) / width - 1
    ys = (torch.arange(height, dtype=theta.dtype, device=theta.device) * 2 + 1) / height - 1
    across = theta[:, :, 0, None] * xs  # (B, 2, W)
    down = theta[:, :, 1, None] * ys + theta[:, :, 2, None]  # (B, 2, H)
    return across[:, None].transpose(2, 3) + down.transpose(1, 2)[:, :, None]  # (B, H, W, 2)


def _uniform(u: Tensor, low: float, high: float) -> Tensor:
    return low + (high - low) * u


def _per_image(values: Tensor, like: Tensor) -> Tensor:
    return values.to(device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)

