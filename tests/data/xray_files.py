"""Helpers of the data tests: tiny image files in every mode the loaders must handle."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

MODES = ("L", "RGB", "RGBA", "P", "I;16", "LA", "exif")


def chest_like(size: int, seed: int) -> np.ndarray:
    """A smooth, seeded grey pattern (distinct per seed), so decoded images differ by content."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    fx, fy, phase = rng.uniform(1, 4), rng.uniform(1, 4), rng.uniform(0, 6)
    img = 0.5 + 0.4 * np.sin(fx * 6 * xx + phase) * np.cos(fy * 6 * yy)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def write_image(path: Path, mode: str = "L", size: int = 48, seed: int = 0) -> Path:
    """Write a small image file in ``mode`` (see MODES); the suffix of ``path`` picks the format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    grey = chest_like(size, seed)
    if mode == "L":
        img = Image.fromarray(grey)
    elif mode == "RGB":
        img = Image.fromarray(np.stack([grey] * 3, axis=-1))
    elif mode == "RGBA":
        alpha = np.full_like(grey, 255)
        img = Image.fromarray(np.stack([grey, grey, grey, alpha], axis=-1))
    elif mode == "P":
        img = Image.fromarray(np.stack([grey] * 3, axis=-1)).convert("P", palette=Image.ADAPTIVE)
    elif mode == "I;16":
        img = Image.fromarray((grey.astype(np.uint16) * 40 + 1000).astype(np.uint16))
    elif mode == "LA":
        img = Image.fromarray(np.stack([grey, np.full_like(grey, 255)], axis=-1), mode="LA")
    elif mode == "exif":
        # Stored sideways with orientation 6 (display = rotated 90 degrees clockwise).
        img = Image.fromarray(np.rot90(grey, 1).copy())
        exif = Image.Exif()
        exif[0x0112] = 6
        img.save(path, format="JPEG", exif=exif.tobytes(), quality=95)
        return path
    else:
        raise ValueError(mode)
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    if fmt == "JPEG" and img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    img.save(path, format=fmt, quality=95)
    return path


def write_class_tree(root: Path, counts: dict[str, int], start_seed: int = 0) -> list[Path]:
    """``root/<class>/img_<i>.<ext>`` with modes and formats cycling through MODES."""
    paths, seed = [], start_seed
    for name, count in counts.items():
        for i in range(count):
            mode = MODES[seed % len(MODES)]
            ext = ".jpg" if mode == "exif" or (mode == "RGB" and seed % 2) else ".png"
            paths.append(write_image(root / name / f"img_{i:03d}{ext}", mode, seed=seed))
            seed += 1
    return paths


def age_files(root: Path, seconds: float = 3600.0) -> None:
    """Backdate a file, or every file below a folder, as files on disk normally are: the hash
    index trusts only settled files (one changed within the last seconds is hashed again)."""
    past = time.time() - seconds
    files = [root] if root.is_file() else [Path(d) / f for d, _, fs in os.walk(root) for f in fs]
    for path in files:
        os.utime(path, (past, past))


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
