"""Soft masks, smooth random fields and blur on batched coordinate grids."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def _ramp(distance: np.ndarray, width: float) -> np.ndarray:
    """Soft inside-indicator: 0 outside, 1 inside, linear across ``width`` around the border."""
    out = distance * np.float32(1.0 / width)
    out += np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


@lru_cache(maxsize=32)
def _interp_matrix(cells: int, size: int) -> np.ndarray:
    """Gaussian interpolation from a coarse grid of knots onto ``size`` pixel centres."""
    knots = (np.arange(cells + 2) - 0.5) / cells
    pixels = (np.arange(size) + 0.5) / size
    weights = np.exp(-0.5 * ((pixels[:, None] - knots[None, :]) * cells / 0.7) ** 2)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def _coarse(rng: np.random.Generator, batch: int, cells: int) -> np.ndarray:
    return rng.standard_normal((batch, cells + 2, cells + 2)).astype(np.float32)


def _smooth(coarse: np.ndarray, size: int) -> np.ndarray:
    """Smooth random field with unit spread per image; feature size is set by the coarse grid."""
    m = _interp_matrix(coarse.shape[-1] - 2, size)
    field = m @ coarse @ m.T
    return field / (field.std(axis=(1, 2), keepdims=True) + 1e-6)


def _ridges(field: np.ndarray, width: float) -> np.ndarray:
    """Thin lines along the zero crossings of a smooth field: reticulation, bronchograms."""
    return np.exp(-((field / width) ** 2))


def _cell_edges(points: np.ndarray, size: int, width: float) -> np.ndarray:
    """Polygonal net (borders of a jittered-grid Voronoi tiling): interstitial reticulation.

    ``points`` holds one random point per grid cell (batch, cells + 2, cells + 2, 2); each pixel
    only looks at the 3 x 3 cells around it, so the cost does not grow with the number of cells.
    """
    cells = points.shape[1] - 2
    pos = (np.arange(size, dtype=np.float32) + 0.5) * np.float32(cells / size)
    index = np.minimum(pos.astype(np.int64), cells - 1)
    nearest = np.full((points.shape[0], size, size), np.inf, dtype=np.float32)
    second = nearest.copy()
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            rows, cols = index + di, index + dj
            seed = points[:, rows[:, None] + 1, cols[None, :] + 1]
            dist = (pos - rows.astype(np.float32))[:, None] - seed[..., 0]
            dist *= dist
            dist += ((pos - cols.astype(np.float32))[None, :] - seed[..., 1]) ** 2
            second = np.minimum(second, np.maximum(nearest, dist))
            nearest = np.minimum(nearest, dist)
    # Lines thinner than a pixel would alias into sparkles: widen them to about a pixel and dim
    # them, by less than the widening so the net stays about as visible at small sizes.
    drawn = max(width, 0.7 * cells / size)
    return math.sqrt(width / drawn) * np.exp(-(((np.sqrt(second) - np.sqrt(nearest)) / drawn) ** 2))


def _blur(images: np.ndarray, sigma_px: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur with a per-image sigma (detector unsharpness)."""
    radius = max(1, int(np.ceil(3 * float(sigma_px.max()))))
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (offsets[None, :] / np.maximum(sigma_px[:, None], 1e-3)) ** 2)
    kernel = (kernel / kernel.sum(axis=1, keepdims=True))[:, :, None, None]
    size = images.shape[-1]
    for axis in (1, 2):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(images, pad, mode="edge")
        out = np.zeros_like(images)
        for i in range(2 * radius + 1):
            window = padded[:, i : i + size, :] if axis == 1 else padded[:, :, i : i + size]
            out += kernel[:, i] * window
        images = out
    return images




def _band(offset: np.ndarray, half_width: float) -> np.ndarray:
    """Bone-like cross-section: flat top with fairly sharp cortical edges."""
    return np.sqrt(np.clip(1.0 - (offset / half_width) ** 2, 0.0, 1.0))

