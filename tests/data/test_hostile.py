"""Hostile and messy files on disk: broken images, decompression bombs, unreadable files and
folders, symlink loops, file names that are not UTF-8. Each is one warning or error line that
names the path and the fix; nothing crashes or hangs."""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from xray_files import chest_like, write_class_tree, write_image

from pipeline.common.errors import DataError
from pipeline.data.bundle import load_data
from pipeline.data.images import UnreadableImage, decode_image
from pipeline.data.layouts import TreeWarning
from pipeline.data.sources import BadImageWarning
from pipeline.describe_data import main as describe_main


def load_tree(make_cfg, root: Path, *extra: str):
    return load_data(make_cfg("dataset=imagefolder", f"dataset.root={root}",
                              "dataset.image_size=32", "dataset.positive_class=b", *extra))


def bomb_png() -> bytes:
    """A valid 8 x 8 PNG whose header claims 30000 x 30000 pixels (far over Pillow's limit)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", 30000, 30000)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # IHDR checksum
    return bytes(data)


def corrupt_jpeg() -> bytes:
    """A JPEG whose header is intact and whose entropy-coded data is garbage."""
    buf = io.BytesIO()
    Image.fromarray(chest_like(64, 9)).save(buf, format="JPEG", quality=90)
    data = bytearray(buf.getvalue())
    for i in range(len(data) // 2, len(data) - 4, 5):
        data[i] = 0xFF
    return bytes(data)


def bad_crc_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(chest_like(32, 4)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[data.find(b"IDAT") + 8] ^= 0xFF
    return bytes(data)


def test_bomb_is_a_bad_image_and_the_limit_stays_on(tmp_path: Path) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    assert limit is not None
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png())
    with pytest.raises(UnreadableImage) as info:
        decode_image(path, 32)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert "exceeds Pillow's decompression-bomb limit" in message
    assert f"900000000 pixels > {2 * limit}" in message and "re-export" in message
    assert Image.MAX_IMAGE_PIXELS == limit


def test_broken_files_in_a_tree_are_skipped_with_one_line(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "r"
    write_class_tree(root, {"a": 5, "b": 5})
    (root / "a" / "zero.png").write_bytes(b"")
    (root / "a" / "corrupt.jpg").write_bytes(corrupt_jpeg())
    (root / "b" / "crc.png").write_bytes(bad_crc_png())
    (root / "b" / "bomb.png").write_bytes(bomb_png())
    good = (root / "b" / "img_000.png").read_bytes()
    (root / "b" / "cut.png").write_bytes(good[: len(good) // 2])
    with pytest.warns(BadImageWarning) as record:
        bundle = load_tree(make_cfg, root)
    record = [w for w in record if issubclass(w.category, BadImageWarning)]
    assert len(record) == 1
    text = str(record[0].message)
    assert "\n" not in text and "skipped 5 unreadable image(s) of 15" in text
    assert "repair, re-export or remove them" in text and "on_bad_image=error" in text
    reasons = dict(bundle.skipped)
    assert set(reasons) == {"a/zero.png", "a/corrupt.jpg", "b/crc.png", "b/bomb.png", "b/cut.png"}
    assert "decompression-bomb" in reasons["b/bomb.png"]
    assert "not an image file" in reasons["a/zero.png"]
    assert len(bundle.labels) == 10


def test_sixteen_bit_tiff_and_palette_with_transparency(tmp_path: Path) -> None:
    ramp = np.linspace(100, 60000, 32 * 32).reshape(32, 32).astype(">u2")
    tiff = tmp_path / "ramp.tif"
    Image.frombytes("I;16B", (32, 32), ramp.tobytes()).save(tiff)
    out = decode_image(tiff, 32)
    assert out.min() <= 2 and out.max() >= 253
    assert np.all(np.diff(out.astype(int).ravel()) >= 0)  # order kept, not wrapped at 8 bits

    grey = np.full((16, 16), 200, np.uint8)
    grey[:, 8:] = 100
    palette = tmp_path / "trns.png"
    img = Image.fromarray(grey).convert("P")
    img.save(palette, transparency=img.getpixel((15, 0)))  # the 100-grey right half: transparent
    assert Image.open(palette).mode == "P"
    out = decode_image(palette, 16).astype(int)
    assert out[:, :6].mean() > 190 and out[:, -6:].max() == 0


def test_unreadable_file_reason_says_how_to_fix(tmp_path: Path, make_cfg, monkeypatch) -> None:
    """A file the process may not read (simulated, so the test also runs as root)."""
    root = tmp_path / "r"
    write_class_tree(root, {"a": 5, "b": 5})
    locked = root / "a" / "img_002.png"
    real_open = os.open

    def open_file(path, flags, *args, **kwargs):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_file)
    with pytest.warns(BadImageWarning, match=r"a/img_002\.png \(cannot be read \(Permission "
                                             r"denied; chmod a\+r makes it readable\)\)"):
        bundle = load_tree(make_cfg, root)
    assert len(bundle.labels) == 9


def test_chmod_000_file_and_folder(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "r"
    write_class_tree(root, {"a": 5, "b": 5, "c": 2})
    locked_file, locked_dir = root / "a" / "img_000.png", root / "c"
    locked_file.chmod(0)
    locked_dir.chmod(0)
    try:
        if os.geteuid() == 0 or os.access(locked_file, os.R_OK) or os.access(locked_dir, os.R_OK):
            pytest.skip("permissions do not stop this user from reading (root?)")
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            bundle = load_tree(make_cfg, root, "dataset.classes=[a,b]")
        texts = [str(w.message) for w in record]
        assert any("a/img_000.png (cannot be read (Permission denied" in t for t in texts)
        assert bundle.class_counts() == {"a": 4, "b": 5}
        with pytest.raises(DataError, match=r"class 'c' .* no images"):
            load_tree(make_cfg, root)
    finally:
        locked_file.chmod(0o644)
        locked_dir.chmod(0o755)


def test_symlink_loops_neither_hang_nor_crash(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "r"
    write_class_tree(root, {"a": 5, "b": 5})
    (root / "a" / "again").symlink_to(root / "a")  # a folder linking to itself
    (root / "b" / "up").symlink_to(root)  # a folder linking to the root above it
    (root / "loop").symlink_to(root)  # a class folder that is the root again
    (root / "b" / "x.png").symlink_to(root / "b" / "y.png")  # two file links to each other
    (root / "b" / "y.png").symlink_to(root / "b" / "x.png")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        bundle = load_tree(make_cfg, root)
    tree = [str(w.message) for w in record if issubclass(w.category, TreeWarning)]
    assert len(tree) == 1 and "\n" not in tree[0]
    assert "did not read 3 folder(s)" in tree[0] and "symlink loop" in tree[0]
    for name in ("loop", "a/again", "b/up"):
        assert name in tree[0]
    assert bundle.classes == ["a", "b"] and bundle.class_counts() == {"a": 5, "b": 5}
    assert dict(bundle.skipped) == {"b/x.png": "symlink loop (the link leads back to itself)",
                                    "b/y.png": "symlink loop (the link leads back to itself)"}


def test_symlinked_folder_below_a_class_is_named(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "r"
    write_class_tree(root, {"a": 5, "b": 5})
    write_class_tree(tmp_path / "elsewhere", {"more": 2}, start_seed=40)
    (root / "a" / "more").symlink_to(tmp_path / "elsewhere" / "more")
    with pytest.warns(TreeWarning, match=r"a/more \(symlinked folder, not followed\).*replace "
                                         r"a link with the real folder"):
        bundle = load_tree(make_cfg, root)
    assert bundle.class_counts() == {"a": 5, "b": 5}


def non_utf8_tree(root: Path) -> bytes:
    write_class_tree(root, {"a": 5, "b": 5})
    name = b"\xff\xfe-scan.png"
    try:
        with open(os.path.join(os.fsencode(root / "a"), name), "wb") as fh:
            fh.write(write_image(root / "tmp.png", seed=31).read_bytes())
    except OSError as exc:
        pytest.skip(f"this file system refuses non-UTF-8 names ({exc})")
    (root / "tmp.png").unlink()
    return name


def test_non_utf8_file_name_is_read_and_kept(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "r"
    name = non_utf8_tree(root)
    bundle = load_tree(make_cfg, root)
    decoded = os.fsdecode(name)
    assert f"a/{decoded}" in bundle.files and not bundle.skipped
    row = bundle.files.index(f"a/{decoded}")
    assert np.array_equal(bundle.images[row], decode_image(root / "a" / decoded, 32))
    assert load_tree(make_cfg, root).fingerprint == bundle.fingerprint
    csv = bundle.write_manifest(tmp_path / "manifest.csv").read_bytes()
    assert b"a/" + name in csv  # the file's own bytes, not a lossy replacement


def test_describe_prints_a_non_utf8_name(tmp_path: Path, state_dir: Path, capsys) -> None:
    root = tmp_path / "r"
    non_utf8_tree(root)
    (root / "a" / "img_000.png").write_bytes(
        (root / "a" / os.fsdecode(b"\xff\xfe-scan.png")).read_bytes())  # a duplicate, listed
    assert describe_main(["dataset=imagefolder", f"dataset.root={root}", "dataset.image_size=32",
                          "dataset.positive_class=b", f"state_dir={state_dir}"]) == 0
    out = capsys.readouterr().out  # pytest's capture is strict UTF-8, like a pipe
    assert "a/\\xff\\xfe-scan.png [" in out and "(labels differ)" not in out
