"""A large image collection for the scaling figures, written once per run: real encoded PNG and
JPEG files (so decoding is real work) in the imagefolder layout, every image its own radiograph.

The embedded generator takes about 20 ms per 256 px image, too slow for 10,000 of them: a few
dozen rendered radiographs are each blended with a random smooth field and fine noise, which
gives every file distinct content and a difference hash far from every other (no duplicates).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

CLASSES = ("covid", "normal", "pneumonia")
_BASES = 48  # rendered radiographs the files are blended from
_FIELD = 12  # cells of the random smooth field across an image
_CHUNK = 500  # files per worker task


def write_collection(root: Path, count: int, size: int = 256, seed: int = 0) -> Path:
    """``count`` images of ``size`` px under ``root/<class>/``, alternately PNG and JPEG; the
    files are named the way the imagefolder default pattern reads (Kermany's ``person<id>_``),
    two images per patient, and dated a day back, as the files of an unpacked collection are
    (the hash index trusts no file modified in the last seconds). Returns ``root``."""
    from pipeline.data import synthetic

    bases = synthetic.generate(_BASES, size, num_classes=3, seed=seed).images
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
    chunks = [(root, bases, start, min(start + _CHUNK, count), seed)
              for start in range(0, count, _CHUNK)]
    workers = max(1, min(len(chunks), len(os.sched_getaffinity(0))))
    if workers == 1:
        for chunk in chunks:
            _write_chunk(*chunk)
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            list(pool.map(_write_chunk, *zip(*chunks, strict=True)))
    return root


def _write_chunk(root: Path, bases: np.ndarray, start: int, stop: int, seed: int) -> None:
    from PIL import Image

    size = bases.shape[-1]
    past = time.time() - 86400
    rng = np.random.default_rng([seed, start])
    for i in range(start, stop):
        cells = rng.integers(0, 256, (_FIELD, _FIELD), dtype=np.uint8)
        field = np.asarray(Image.fromarray(cells).resize((size, size), Image.Resampling.BICUBIC),
                           dtype=np.float32)
        noise = rng.normal(0.0, 4.0, (size, size))
        pixels = bases[i % len(bases)] * 0.6 + field * 0.4 + noise
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        stem = root / CLASSES[i // 2 % len(CLASSES)] / f"person{i // 2}_{i:06d}"
        path = stem.with_suffix(".jpg" if i % 2 else ".png")
        if i % 2:
            image.save(path, quality=90)
        else:
            image.save(path, compress_level=1)
        os.utime(path, (past, past))
