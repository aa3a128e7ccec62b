"""Open any chest radiograph file the way the decode cache and prediction both need it.

One function, :func:`decode_image`, turns a file (or its bytes) of any Pillow mode and size into an
8-bit grayscale square array at the working size. Training reads the cached result; prediction calls
the same function, so both see identical pixels.
"""

from __future__ import annotations

import errno
import io
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.common.errors import DataError
from pipeline.common.files import kind_of

# Bump when the pixels decode_image produces change: every cache entry is keyed on it.
PREPROCESS_VERSION = 1

# Keras' default interpolation; Pillow antialiases it when shrinking (its support grows with the
# reduction factor).
RESAMPLE = Image.Resampling.BILINEAR

# Modes that hold more than 8 bits of grey: scaled by their actual range, never truncated.
_WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class UnreadableImage(DataError):
    """A file that is not a decodable image (corrupt, truncated, not an image, too large)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def decode_image(source: str | os.PathLike[str] | bytes, image_size: int) -> np.ndarray:
    """Decode ``source`` to a (image_size, image_size) uint8 grayscale array.

    EXIF orientation is applied, colour and palette images go through Pillow's luma conversion,
    transparent pixels are composited onto black (the radiograph background), 16-bit and float
    images are scaled by their own min..max, and the result is resized directly to a square
    (Keras-style, no crop or padding). Raises UnreadableImage naming the file and the reason.
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    data = source if isinstance(source, bytes) else read_bytes(Path(source))  # regular files only
    try:
        with Image.open(io.BytesIO(data)) as img:
            return to_square_gray(img, image_size)
    except FileNotFoundError as exc:
        raise UnreadableImage(name, "file not found") from exc
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(name, _bomb_reason(exc)) from exc
    except UnidentifiedImageError as exc:
        raise UnreadableImage(name, "not an image file (format not recognised)") from exc
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as exc:
        raise UnreadableImage(name, f"not a readable image ({_reason(exc)})") from exc


def _bomb_reason(exc: Image.DecompressionBombError) -> str:
    """Pillow's MAX_IMAGE_PIXELS guard stays on: a huge image is a bad image, never decoded."""
    sizes = re.findall(r"\d+", str(exc))
    what = f" ({sizes[0]} pixels > {sizes[1]})" if len(sizes) >= 2 else ""
    return (
        f"exceeds Pillow's decompression-bomb limit{what}, not decoded: "
        f"re-export it at a smaller size if it is a genuine radiograph"
    )


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def to_square_gray(img: Image.Image, size: int) -> np.ndarray:
    """The preprocessing of :func:`decode_image` on an opened image (also for array datasets)."""
    if img.format == "JPEG":
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (still >= size on both sides) and to grey.
        img.draft("L", (size, size))
    # No warnings.catch_warnings here: it is not thread-safe, and the cache decodes in threads.
    img.load()
    img = ImageOps.exif_transpose(img)
    if img.mode in _WIDE_MODES:
        return _wide_to_uint8(img, size)
    gray = _to_gray8(img)
    return np.asarray(gray.resize((size, size), RESAMPLE), dtype=np.uint8).copy()


def _to_gray8(img: Image.Image) -> Image.Image:
    """Any 8-bit mode to L; alpha (RGBA, LA, PA, P with transparency) composited onto black."""
    if img.mode == "L":
        return img
    has_alpha = img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info
    if not has_alpha:
        if img.mode not in ("RGB", "1", "P"):
            img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV: through RGB to luma
        return img.convert("L")
    la = np.asarray(img.convert("RGBA").convert("LA"), dtype=np.float32)
    grey, alpha = la[..., 0], la[..., 1]
    if alpha.max() == 0:  # a fully transparent export: the alpha carries nothing, keep the grey
        return Image.fromarray(grey.astype(np.uint8))
    return Image.fromarray(np.rint(grey * alpha / 255.0).astype(np.uint8))


def _wide_to_uint8(img: Image.Image, size: int) -> np.ndarray:
    """16-bit / 32-bit / float grey: resize in float, then map the image's own range to 0..255."""
    arr = np.asarray(img, dtype=np.float32)
    finite = arr[np.isfinite(arr)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    arr = np.nan_to_num(arr, nan=low, posinf=high, neginf=low)
    resized = np.asarray(Image.fromarray(arr).resize((size, size), RESAMPLE), dtype=np.float32)
    if high <= low:
        return np.zeros((size, size), dtype=np.uint8)
    scaled = (resized - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def read_bytes(path: Path) -> bytes:
    """The file's bytes, as an UnreadableImage (not a crash) when the file cannot be read."""
    return read_file(path)[0]


def read_file(path: Path) -> tuple[bytes, os.stat_result]:
    """The file's bytes and the status of the file they came from. Anything but a regular file
    (a FIFO, a device, a socket) is an UnreadableImage and is never opened for reading: opening
    a FIFO waits for a writer forever. It is checked before opening, and again on the opened
    file (opened non-blocking), should the path have been swapped in between."""
    try:
        _require_regular(path, os.stat(path))
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with open(fd, "rb") as fh:
            st = os.fstat(fd)
            _require_regular(path, st)
            return fh.read(), st
    except FileNotFoundError as exc:
        raise UnreadableImage(str(path), "file not found") from exc
    except OSError as exc:
        reason = exc.strerror or _reason(exc)
        if exc.errno == errno.ELOOP:
            reason = "symlink loop (the link leads back to itself)"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            reason = f"cannot be read ({reason}; chmod a+r makes it readable)"
        else:
            reason = f"cannot be read ({reason})"
        raise UnreadableImage(str(path), reason) from exc


# The end of the reason given for a FIFO, device or socket: such a file is always skipped (it is
# no image at all), even under dataset.on_bad_image=error.
NOT_OPENED = "not an image file: not opened"


def not_opened(reason: str) -> bool:
    """Whether a skip reason is a non-regular file's (see NOT_OPENED)."""
    return reason.endswith(NOT_OPENED)


def _require_regular(path: Path, st: os.stat_result) -> None:
    kind = kind_of(st.st_mode)
    if kind is not None:
        raise UnreadableImage(str(path), f"{kind}, {NOT_OPENED}")
