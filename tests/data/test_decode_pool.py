"""The cold scan over one process per core: the same rows, hashes and fingerprint as one process;
a warm scan stats files and reads only those whose size or mtime changed; FIFOs are skipped
unopened; a kill mid-build leaves no worker and no torn entry; long scans show a progress bar."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from xray_files import age_files, write_class_tree, write_image

from pipeline.common.errors import ConfigError
from pipeline.config import PROJECT_ROOT, compose
from pipeline.data import decode_cache, decode_pool
from pipeline.data.bundle import load_data
from pipeline.data.decode_pool import decode_workers
from pipeline.data.images import UnreadableImage, read_file
from pipeline.data.sources import BadImageWarning

pytestmark = pytest.mark.filterwarnings("ignore::pipeline.data.splits.ImageSplitWarning")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "r"
    write_class_tree(root, {"a": 7, "b": 7})
    age_files(root)
    return root


@pytest.fixture
def pooled(monkeypatch) -> None:
    """The process pool even for a handful of files."""
    monkeypatch.setattr(decode_pool, "MIN_PARALLEL", 1)



def load(make_cfg, root: Path, *more: str):
    return load_data(make_cfg("dataset=imagefolder", f"dataset.root={root}",
                              "dataset.image_size=32", "dataset.positive_class=b",
                              "dataset.patient_pattern=null", *more))


def files_of(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if not p.is_dir())


@pytest.mark.usefixtures("pooled")
def test_parallel_scan_equals_one_process(tree: Path, tmp_path: Path, make_cfg) -> None:
    paths = files_of(tree)
    one = decode_cache.decode_files(paths, tree, 32, tmp_path / "one", workers=1)
    two = decode_cache.decode_files(paths, tree, 32, tmp_path / "two", workers=2)
    assert one.decoded == two.decoded == len(paths)
    assert one.kept == two.kept and one.hashes == two.hashes and one.bad == two.bad
    assert np.array_equal(np.asarray(one.images), np.asarray(two.images))
    assert one.images_path.name == two.images_path.name  # the same cache key
    serial = load(make_cfg, tree, "dataset.decode_workers=1")
    pooled = load(make_cfg, tree, "dataset.decode_workers=2", f"state_dir={tmp_path / 's2'}")
    assert serial.fingerprint == pooled.fingerprint
    assert np.array_equal(np.asarray(serial.images), np.asarray(pooled.images))


@pytest.mark.usefixtures("pooled")
def test_parallel_scan_reuses_rows_and_skips_bad_files(tree: Path, state_dir: Path) -> None:
    before = files_of(tree)[:-3]
    first = decode_cache.decode_files(before, tree, 32, state_dir, workers=2)
    (tree / "a" / "broken.png").write_bytes(b"not an image")
    age_files(tree)
    after = files_of(tree)
    second = decode_cache.decode_files(after, tree, 32, state_dir, workers=2)
    assert second.decoded == 3  # the three new good files; the others' rows are copied
    assert {after[i].name: why for i, why in second.bad.items()} == {
        "broken.png": "not an image file (format not recognised)"}
    row = {after[i]: r for r, i in enumerate(second.kept)}
    for r, i in enumerate(first.kept):
        assert np.array_equal(first.images[r], second.images[row[before[i]]])


def test_warm_scan_reads_only_changed_files(tree: Path, make_cfg, monkeypatch) -> None:
    first = load(make_cfg, tree)
    changed = tree / "a" / "img_001.png"
    touched = tree / "b" / "img_002.png"
    write_image(changed, "L", seed=77)  # new bytes
    os.utime(touched)  # same bytes, new mtime
    age_files(changed, seconds=60)
    age_files(touched, seconds=30)
    real_read, read = decode_pool.read_file, []

    def only_changed(path: Path):
        if path not in (changed, touched):
            raise AssertionError(f"{path} is unchanged but was read")
        read.append(path)
        return real_read(path)

    monkeypatch.setattr(decode_pool, "read_file", only_changed)
    second = load(make_cfg, tree)
    assert sorted(read) == sorted([changed, touched, changed])  # both hashed; one decoded
    assert second.fingerprint != first.fingerprint
    row = second.files.index("b/img_002.png")
    assert np.array_equal(second.images[row], first.images[first.files.index("b/img_002.png")])
    read.clear()
    third = load(make_cfg, tree)  # now everything is settled in the index: no file is read
    assert read == [] and third.fingerprint == second.fingerprint


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.usefixtures("pooled", "deadline")
def test_fifo_is_skipped_unopened(tree: Path, make_cfg, workers: int) -> None:
    fifo = tree / "a" / "stream.png"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    with pytest.warns(BadImageWarning, match=r"a/stream\.png \(a FIFO"):
        bundle = load(make_cfg, tree, f"dataset.decode_workers={workers}")
    assert dict(bundle.skipped) == {
        "a/stream.png": "a FIFO (named pipe), not an image file: not opened"}
    assert len(bundle.files) == 14
    with pytest.raises(UnreadableImage, match="FIFO"):
        read_file(fifo)


def test_decode_workers_setting() -> None:
    assert decode_workers("auto") == len(os.sched_getaffinity(0))
    assert decode_workers(3) == 3
    for bad in ("0", "many", "true"):  # typed once, by the config schema
        with pytest.raises(ConfigError, match="dataset.decode_workers"):
            compose(["dataset=imagefolder", "dataset.root=/data", f"dataset.decode_workers={bad}"])


@pytest.mark.usefixtures("pooled")
def test_long_scan_shows_progress_on_stderr(tree: Path, state_dir: Path, monkeypatch,
                                            capsys) -> None:
    monkeypatch.setattr(decode_pool, "_PROGRESS_AFTER_S", 0.0)
    decode_cache.decode_files(files_of(tree), tree, 32, state_dir, workers=2)
    out, err = capsys.readouterr()
    assert out == "" and "img/s" in err and "decoding" in err


_KILLED_BUILD = """
import sys
from pathlib import Path
from pipeline.data import decode_cache, decode_pool
decode_pool.MIN_PARALLEL = 1
root, state = Path(sys.argv[1]), Path(sys.argv[2])
paths = sorted(p for p in root.rglob("*") if p.is_file())
decode_cache.decode_files(paths, root, 32, state, workers=2)
"""


def test_kill_mid_build_leaves_no_worker_and_nothing_torn(tree: Path, state_dir: Path) -> None:
    marker = f"kill-mid-build-{os.getpid()}-{time.monotonic_ns()}"
    env = dict(os.environ, PIPELINE_FAULT="decode", PYTHONPATH=str(PROJECT_ROOT))
    log = tree.parent / "stderr.txt"
    with open(log, "wb") as err:  # not a pipe: a worker left behind would hold it open
        killed = subprocess.run([sys.executable, "-c", _KILLED_BUILD, str(tree),
                                 str(state_dir), marker], env=env, stdout=subprocess.DEVNULL,
                                stderr=err, timeout=120)
    assert killed.returncode == -signal.SIGKILL, log.read_text()[-2000:]
    for _ in range(50):  # the workers notice their parent is gone within half a second
        if not _processes_with(marker):
            break
        time.sleep(0.2)
    assert not _processes_with(marker)
    decoded = state_dir / "cache" / "decoded"
    assert not list(decoded.rglob("*.npy")) and not list(decoded.rglob("*.json"))
    paths = files_of(tree)
    again = decode_cache.decode_files(paths, tree, 32, state_dir, workers=1)
    assert again.decoded == len(paths) and len(again.kept) == len(paths)


def _processes_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.usefixtures("pooled")
def test_a_full_disk_is_one_line_naming_the_cache_file(tree: Path, small_tmpfs) -> None:
    small_disk = small_tmpfs("1m")
    paths = files_of(tree)
    with pytest.raises(OSError, match="no space left on the device for") as info:
        decode_cache.decode_files(paths, tree, 320, small_disk, workers=2)  # 14 x 100 KB > 1 MB
    assert str(small_disk) in str(info.value) and "\n" not in str(info.value)
    decoded = small_disk / "cache" / "decoded"
    assert not list(decoded.rglob("*.npy")) and not list(decoded.rglob("*.tmp"))
    again = decode_cache.decode_files(paths, tree, 32, small_disk, workers=2)  # what fits
    assert again.decoded == len(paths)
