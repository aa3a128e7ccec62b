"""FIFOs, devices, sockets (and symlinks to them) in a data folder are never opened: the scan ends,
and each one is skipped and counted in describe_data's report, whatever dataset.on_bad_image says;
a manifest, metadata CSV or .npz that is one is refused in one line, not read."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from xray_files import age_files, write_class_tree

from pipeline import describe_data
from pipeline.common.errors import DataError
from pipeline.data.bundle import load_data


@pytest.fixture
def odd_tree(tmp_path: Path) -> Iterator[Path]:
    """Six images a class, plus a FIFO, a symlink to it and a socket among the images."""
    root = tmp_path / "r"
    write_class_tree(root, {"a": 6, "b": 6})
    age_files(root)
    os.mkfifo(root / "a" / "stream.png")  # opening it for reading waits for a writer forever
    (root / "b" / "link.png").symlink_to(root / "a" / "stream.png")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "b" / "s.png"))
    yield root
    sock.close()



@pytest.mark.usefixtures("deadline")
@pytest.mark.parametrize("policy", ["skip", "error"])
def test_describe_data_skips_and_counts_them(odd_tree: Path, state_dir: Path, policy: str,
                                             capsys) -> None:
    assert describe_data.main([
        "dataset=imagefolder", f"dataset.root={odd_tree}", "dataset.image_size=32",
        "dataset.positive_class=b", "dataset.patient_pattern=null",
        f"dataset.on_bad_image={policy}", f"state_dir={state_dir}"]) == 0
    out = capsys.readouterr().out
    assert "skipped files: 3" in out
    assert "a/stream.png: a FIFO (named pipe), not an image file: not opened" in out
    assert "b/link.png: a FIFO (named pipe)" in out
    assert "b/s.png: a socket, not an image file: not opened" in out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["skipped"] == 3 and sum(summary["splits"].values()) == 12


def test_a_bad_image_still_stops_under_error(odd_tree: Path, make_cfg) -> None:
    (odd_tree / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png: not an image file .*on_bad_image=skip"):
        load_data(make_cfg("dataset=imagefolder", f"dataset.root={odd_tree}",
                           "dataset.image_size=32", "dataset.positive_class=b",
                           "dataset.on_bad_image=error"))


def test_a_fifo_manifest_is_refused_unopened(tmp_path: Path, make_cfg) -> None:
    write_class_tree(tmp_path / "r", {"a": 2})
    os.mkfifo(tmp_path / "r" / "labels.csv")
    with pytest.raises(DataError, match=r"labels\.csv is a FIFO \(named pipe\), not a regular"):
        load_data(make_cfg("dataset=manifest", f"dataset.root={tmp_path / 'r'}",
                           "dataset.csv=labels.csv"))


def test_a_fifo_npz_is_refused_not_downloaded_into(tmp_path: Path, make_cfg) -> None:
    os.mkfifo(tmp_path / "pneumoniamnist_64.npz")
    with pytest.raises(DataError, match=r"pneumoniamnist_64\.npz is a FIFO"):
        load_data(make_cfg("dataset=medmnist", f"dataset.root={tmp_path}", "dataset.size=64"))
