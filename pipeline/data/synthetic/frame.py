"""One chunk's parameters, random fields and coordinate grids."""

from __future__ import annotations

import copy

import numpy as np

from pipeline.data.synthetic.shapes import _smooth


class _Frame:
    """One chunk's parameters, random fields and coordinate grids in the body frame.

    Body coordinates: x across (patient's left on the image right), y down, the thorax spanning
    about -0.5 to 0.5. Masks found while drawing the anatomy (body, lung, air) are kept here too.
    """

    def __init__(self, p: dict[str, np.ndarray], fields: dict[str, np.ndarray], size: int) -> None:
        self.p, self.fields, self.size = p, fields, size
        grid = (np.arange(size, dtype=np.float32) + 0.5) / size
        self.u = grid[None, None, :]
        self.v = grid[None, :, None]
        dx, dy = self.u - self.col("cx"), self.v - self.col("cy")
        cos, sin = np.cos(self.col("rot")), np.sin(self.col("rot"))
        self.x = (dx * cos + dy * sin) / (self.col("scale") * self.col("aspect"))
        self.y = (-dx * sin + dy * cos) / self.col("scale")
        self.ax = np.abs(self.x)
        self.left = self.x > 0  # patient's left, image right
        # Medial lung border: the heart pushes the left lung a little further out.
        self.medial = np.where(self.left, np.float32(0.06), np.float32(0.05))
        self.edge = max(0.01, 1.5 / size)
        self.body = self.lung = self.air = np.zeros_like(self.x)

    def col(self, key: str) -> np.ndarray:
        """A per-image parameter shaped to broadcast over the pixel grid."""
        return self.p[key][:, None, None]

    def smooth(self, name: str) -> np.ndarray:
        return _smooth(self.fields[name], self.size)

    def take(self, index: np.ndarray) -> _Frame:
        """The frame for some of the images, so rare features cost only the images showing them."""
        sub = copy.copy(self)
        sub.p = {key: value[index] for key, value in self.p.items()}
        sub.fields = {key: value[index] for key, value in self.fields.items()}
        for name in ("x", "y", "ax", "left", "medial", "body", "lung", "air"):
            setattr(sub, name, getattr(self, name)[index])
        return sub


