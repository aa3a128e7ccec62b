"""Decode once: later loads read the memory-mapped cache, never the image files; a changed file
or size is decoded again; concurrent builders and half-written entries are safe."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from xray_files import age_files, write_class_tree, write_image

from pipeline.config import compose
from pipeline.data import decode_pool
from pipeline.data.bundle import load_data
from pipeline.data.hashing import HashIndex


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "r"
    write_class_tree(root, {"a": 6, "b": 6})
    age_files(root)
    return root


class Counter:
    """Wraps a function and counts its calls (decode_image, read_file)."""

    def __init__(self, fn) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def counted(monkeypatch) -> tuple[Counter, Counter]:
    decodes = Counter(decode_pool.decode_image)
    reads = Counter(decode_pool.read_file)
    monkeypatch.setattr(decode_pool, "decode_image", decodes)
    monkeypatch.setattr(decode_pool, "read_file", reads)
    return decodes, reads


def load(make_cfg, root: Path, size: int = 32):
    return load_data(make_cfg("dataset=imagefolder", f"dataset.root={root}",
                              f"dataset.image_size={size}", "dataset.positive_class=b"))


def test_second_load_opens_no_image_file(tree: Path, make_cfg, monkeypatch) -> None:
    first = load(make_cfg, tree)
    pixels = np.array(first.images)
    decodes, reads = counted(monkeypatch)
    second = load(make_cfg, tree)  # make_cfg clears the per-process memo
    assert second is not first
    assert decodes.calls == 0 and reads.calls == 0
    assert isinstance(second.images, np.memmap)
    assert np.array_equal(np.asarray(second.images), pixels)
    assert second.fingerprint == first.fingerprint


def test_changed_file_is_decoded_again_alone(tree: Path, make_cfg, monkeypatch) -> None:
    first = load(make_cfg, tree)
    target = sorted((tree / "a").iterdir())[0]
    row = first.files.index(f"a/{target.name}")
    before = np.array(first.images[row])
    write_image(target, "L", seed=999)  # same name, new content
    age_files(target, seconds=60)
    decodes, reads = counted(monkeypatch)
    second = load(make_cfg, tree)
    assert decodes.calls == 1 and reads.calls == 2  # hashed once, decoded once
    assert not np.array_equal(np.array(second.images[second.files.index(f"a/{target.name}")]),
                              before)
    assert second.fingerprint != first.fingerprint


def test_changed_size_is_decoded_again(tree: Path, make_cfg, monkeypatch) -> None:
    load(make_cfg, tree, size=32)
    decodes, reads = counted(monkeypatch)
    bundle = load(make_cfg, tree, size=40)
    assert bundle.images.shape[1:] == (40, 40)
    assert decodes.calls == len(bundle.files)  # decoded at the new size
    assert reads.calls == 2 * len(bundle.files) - decodes.calls  # hashes came from the index


def test_fresh_files_are_hashed_again_but_not_decoded(tmp_path: Path, make_cfg,
                                                       monkeypatch) -> None:
    root = tmp_path / "r"
    write_class_tree(root, {"a": 5, "b": 5})  # just written: too fresh to trust by mtime
    load(make_cfg, root)
    decodes, reads = counted(monkeypatch)
    load(make_cfg, root)
    assert reads.calls == 10 and decodes.calls == 0


def test_hash_index_trusts_only_unchanged_stat(tmp_path: Path) -> None:
    path = write_image(tmp_path / "x.png")
    age_files(tmp_path)
    index = HashIndex(tmp_path / "index.json")
    digest = index.remember(path, path.read_bytes())
    assert index.lookup(path) == digest
    index.save()
    reloaded = HashIndex(tmp_path / "index.json")
    assert reloaded.lookup(path) == digest
    write_image(path, seed=5)  # new bytes, new mtime
    assert reloaded.lookup(path) is None


def test_torn_or_stray_entries_are_never_read(tree: Path, make_cfg) -> None:
    first = load(make_cfg, tree)
    pixels = np.array(first.images)
    array_path = first.images_path
    del first
    data = array_path.read_bytes()
    array_path.write_bytes(data[: len(data) // 2])  # a torn entry under the final name
    (array_path.parent / f".{array_path.name}.abc.tmp").write_bytes(b"half")  # a dead writer's
    second = load(make_cfg, tree)
    assert np.array_equal(np.asarray(second.images), pixels)


def _build_in_child(args: tuple[str, str]) -> tuple[str, bytes]:
    root, state = args
    cfg = compose(["dataset=imagefolder", f"dataset.root={root}", "dataset.image_size=32",
                   "dataset.positive_class=b",
                   f"state_dir={state}"])
    bundle = load_data(cfg)
    return bundle.fingerprint, np.asarray(bundle.images).tobytes()


def test_concurrent_builders_agree(tree: Path, state_dir: Path) -> None:
    with multiprocessing.get_context("fork").Pool(3) as pool:
        results = pool.map(_build_in_child, [(str(tree), str(state_dir))] * 3)
    assert len(set(results)) == 1
    cache = state_dir / "cache"
    assert not list(cache.rglob("*.tmp"))
    assert len(list((cache / "decoded").rglob("*.npy"))) == 1


def test_synthetic_is_generated_once(make_cfg, monkeypatch) -> None:
    from pipeline.data import synthetic

    first = load_data(make_cfg("dataset.num_images=60", "dataset.image_size=32"))

    def no_generate(*args, **kwargs):
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(synthetic, "generate", no_generate)
    second = load_data(make_cfg("dataset.num_images=60", "dataset.image_size=32"))
    assert isinstance(second.images, np.memmap)
    assert np.array_equal(np.asarray(second.images), np.asarray(first.images))
    assert second.fingerprint == first.fingerprint
