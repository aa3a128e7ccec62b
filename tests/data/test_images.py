"""decode_image: every mode and format to one square uint8 grayscale array."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from xray_files import MODES, chest_like, png_bytes, write_image

from pipeline.common.errors import DataError
from pipeline.data.images import UnreadableImage, decode_image

CASES = [(m, ".png") for m in MODES if m != "exif"] + [(m, ".jpg") for m in ("L", "RGB", "exif")]


@pytest.mark.parametrize(("mode", "suffix"), CASES)
def test_every_mode_decodes_to_square_uint8(tmp_path: Path, mode: str, suffix: str) -> None:
    path = write_image(tmp_path / f"x{suffix}", mode, size=40, seed=3)
    out = decode_image(path, 24)
    assert out.shape == (24, 24) and out.dtype == np.uint8
    reference = np.asarray(Image.fromarray(chest_like(40, 3)).resize((24, 24), Image.BILINEAR))
    if mode != "I;16":  # 16-bit is rescaled by its own range, checked below
        assert np.abs(out.astype(int) - reference).mean() < 6


def test_sixteen_bit_scaled_by_its_range_not_truncated(tmp_path: Path) -> None:
    ramp = np.linspace(1000, 3000, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    out = decode_image(path, 64)
    assert out.min() <= 2 and out.max() >= 253  # the full 8-bit range, not clipped at 255
    assert np.all(np.diff(out.astype(int)[:, 32]) >= 0)  # order kept


def test_exif_orientation_applied(tmp_path: Path) -> None:
    marker = np.zeros((40, 80), np.uint8)
    marker[:, :20] = 255  # a bright band on the left of the displayed image
    stored = np.rot90(marker, 1).copy()  # stored 90 degrees counter-clockwise (80 x 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # viewer must rotate 90 clockwise
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    out = decode_image(path, 40).astype(int)
    assert out[:, :8].mean() > 200 and out[:, -8:].mean() < 50


def test_transparency_composited_onto_black() -> None:
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, :8, 3] = 255  # left half opaque, right half transparent
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    out = decode_image(buf.getvalue(), 16).astype(int)
    assert out[:, :6].mean() > 190 and out[:, -6:].mean() < 5


def test_bytes_and_path_give_the_same_pixels(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png", "RGB", size=50, seed=1)
    assert np.array_equal(decode_image(path, 32), decode_image(path.read_bytes(), 32))


def test_big_jpeg_draft_decode_matches_full_decode(tmp_path: Path) -> None:
    big = np.asarray(Image.fromarray(chest_like(64, 5)).resize((2048, 2048), Image.BILINEAR))
    path = tmp_path / "big.jpg"
    Image.fromarray(big).convert("RGB").save(path, quality=95)
    fast = decode_image(path, 64).astype(int)
    with Image.open(path) as img:
        full = np.asarray(img.convert("L").resize((64, 64), Image.BILINEAR)).astype(int)
    assert np.abs(fast - full).mean() < 3


@pytest.mark.parametrize(
    "content",
    [b"not an image at all", png_bytes(chest_like(32, 0))[:60], b""],
    ids=["text", "truncated-png", "empty"],
)
def test_unreadable_raises_one_line_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(UnreadableImage) as info:
        decode_image(path, 32)
    assert isinstance(info.value, DataError)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_jpeg_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    Image.fromarray(chest_like(256, 2)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UnreadableImage, match="cut.jpg"):
        decode_image(path, 32)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImage, match="file not found"):
        decode_image(tmp_path / "nope.png", 32)
