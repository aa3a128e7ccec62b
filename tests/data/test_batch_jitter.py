"""Batched augmentation: uint8 batches keep their shape and dtype, every image draws its own
parameters, a seeded generator repeats them, and each image's warp is torchvision's affine (then
flip) with the parameters drawn for it; the intensity steps stay inside the preset's factors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from pipeline.config import compose
from pipeline.data.batch_jitter import BatchJitter
from pipeline.data.transforms import build_augmentation


def batch(n: int = 6, h: int = 28, w: int = 36, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, 1, h, w), dtype=np.uint8))


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("preset", ["light", "paper", "strong"])
def test_presets_keep_shape_and_dtype_and_repeat_under_a_seed(preset: str) -> None:
    jitter = build_augmentation(compose([f"augmentation={preset}"]).augmentation)
    x = batch()
    out = jitter(x, seeded(3))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(out, jitter(x, seeded(3)))
    assert not torch.equal(out, jitter(x, seeded(4)))
    assert torch.equal(x, batch())  # the input is left as it was


def test_every_image_draws_its_own_parameters() -> None:
    jitter = build_augmentation(compose(["augmentation=light"]).augmentation)
    same = batch(1).repeat(8, 1, 1, 1)  # one image, eight times
    out = jitter(same, seeded(0))
    assert len({out[i].numpy().tobytes() for i in range(8)}) == 8


def _drawn(generator_seed: int, n: int) -> torch.Tensor:
    return torch.rand((n, 8), generator=seeded(generator_seed), dtype=torch.float64)


def test_each_warp_is_torchvisions_affine_then_flip() -> None:
    jitter = BatchJitter(rotation=10, translate=(0.1, 0.2), scale=(0.8, 1.2), shear=12,
                         hflip=0.5)
    x = batch(8)
    out = jitter(x, seeded(7))
    u = _drawn(7, len(x))
    flipped = 0
    for i in range(len(x)):
        angle, dx, dy, zoom, shear, flip = u[i, :6].tolist()
        ref = TF.affine(x[i].float(), angle=-10 + 20 * angle,
                        translate=[round((2 * dx - 1) * 0.1 * 36), round((2 * dy - 1) * 0.2 * 28)],
                        scale=0.8 + 0.4 * zoom, shear=[-12 + 24 * shear, 0.0],
                        interpolation=TF.InterpolationMode.BILINEAR)
        if flip < 0.5:
            ref, flipped = TF.horizontal_flip(ref), flipped + 1
        diff = (out[i].int() - ref.round().int()).abs()
        assert diff.max() <= 1, i  # float rounding at most
    assert 0 < flipped < len(x)


def test_flip_alone_mirrors_exactly() -> None:
    x = batch(4)
    assert torch.equal(BatchJitter(hflip=1.0)(x, seeded(0)), torch.flip(x, dims=[-1]))


def test_intensity_factors_stay_in_range() -> None:
    flat = torch.full((64, 1, 8, 8), 100, dtype=torch.uint8)
    bright = BatchJitter(brightness=0.1)(flat, seeded(1)).float()
    assert bright.min() >= 90 and bright.max() <= 110 and bright.std() > 1
    assert torch.equal(bright, bright[:, :, :1, :1].expand_as(bright))  # one factor per image
    ramp = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8).repeat(32, 1, 1, 1) + 100
    out = BatchJitter(contrast=0.3)(ramp, seeded(2)).float()
    spread = (out.amax(dim=(1, 2, 3)) - out.amin(dim=(1, 2, 3))) / 63
    assert spread.min() >= 0.7 - 0.02 and spread.max() <= 1.3 + 0.02 and spread.std() > 0.01
    assert torch.allclose(out.mean(dim=(1, 2, 3)), ramp.float().mean(), atol=0.6)


def test_a_batch_that_is_not_uint8_is_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        BatchJitter(rotation=5)(batch().float())


def test_grid_is_torchs_affine_grid() -> None:
    from pipeline.data.batch_jitter import _affine_grid

    theta = torch.eye(2, 3).repeat(5, 1, 1) + 0.2 * torch.randn(5, 2, 3)
    expected = torch.nn.functional.affine_grid(theta, [5, 1, 20, 30], align_corners=False)
    assert torch.allclose(_affine_grid(theta, 20, 30), expected, atol=1e-6)
