"""Scratch files of killed writers: three builds of the decode cache killed mid-write leave three
preallocated scratch arrays; the next run removes them, so one entry is all that is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from xray_files import age_files, write_class_tree

from pipeline.common.atomic import temp_beside
from pipeline.common.scratch import remove_stale, writer_tag
from pipeline.config import PROJECT_ROOT
from pipeline.data import decode_cache

_KILLED_BUILD = """
import sys
from pathlib import Path
from pipeline.data import decode_cache
root, state = Path(sys.argv[1]), Path(sys.argv[2])
paths = sorted(p for p in root.rglob("*") if p.is_file())
decode_cache.decode_files(paths, root, 32, state, workers=1)
"""


def _disk_use(folder: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def test_three_killed_builds_then_one_clean_run_leave_one_entry(tmp_path: Path) -> None:
    root, state = tmp_path / "r", tmp_path / "state"
    write_class_tree(root, {"a": 5, "b": 5})
    age_files(root)
    env = dict(os.environ, PIPELINE_FAULT="decode", PYTHONPATH=str(PROJECT_ROOT))
    for _ in range(3):
        killed = subprocess.run([sys.executable, "-c", _KILLED_BUILD, str(root), str(state)],
                                env=env, capture_output=True, timeout=120, check=False)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    decoded = state / "cache" / "decoded"
    # Each killed build removed the one before it left, so one killed writer's is there.
    assert len(list(decoded.rglob("*.tmp"))) == 1

    paths = sorted(p for p in root.rglob("*") if p.is_file())
    clean = decode_cache.decode_files(paths, root, 32, state, workers=1)
    assert clean.decoded == 10
    assert not list(state.rglob("*.tmp"))
    entry = [clean.images_path, clean.images_path.with_suffix(".json")]
    assert sorted(p for p in decoded.rglob("*") if p.is_file()) == sorted(entry)
    assert _disk_use(decoded) == sum(p.stat().st_blocks * 512 for p in entry)


def test_a_live_writers_scratch_is_kept(tmp_path: Path) -> None:
    other_host = tmp_path / ".x.npy.elsewhere~1~1.abc.tmp"  # another machine's: not known dead
    other_host.write_bytes(b"x")
    with temp_beside(tmp_path / "x.npy") as mine:
        assert writer_tag() in mine.name
        assert remove_stale(tmp_path) == (0, 0)
        assert mine.exists() and other_host.exists()
    assert remove_stale(tmp_path, locked=("x.npy",))[0] == 1  # under the entry's lock: stale
    assert not other_host.exists()
