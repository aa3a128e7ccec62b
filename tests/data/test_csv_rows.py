"""Messy CSV rows (the manifest layout and covid-chestxray's metadata.csv): paths that leave the
dataset root, empty cells, rows listed twice. One line each: the CSV, its rows and the fix."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from xray_files import write_image

from pipeline.common.errors import ConfigError, DataError
from pipeline.data.bundle import load_data
from pipeline.data.layouts import RepeatedRowWarning


def manifest(root: Path, rows: list[tuple], columns=("path", "label", "patient_id")) -> Path:
    """root/m.csv listing ``rows``; 12 readable images 0.png..11.png (labels x/y) come first."""
    base = []
    for i in range(12):
        write_image(root / f"{i}.png", seed=i)
        base.append((f"{i}.png", "xy"[i % 2], f"p{i}")[: len(columns)])
    csv = root / "m.csv"
    pd.DataFrame(base + rows, columns=list(columns)).to_csv(csv, index=False)
    return csv


def load(make_cfg, root: Path, *extra: str):
    return load_data(make_cfg("dataset=manifest", f"dataset.root={root}", "dataset.csv=m.csv",
                              "dataset.positive_class=y", "dataset.image_size=32",
                              "dataset.val_fraction=0.25",
                              "dataset.test_fraction=0.25", *extra))


def one_line_error(make_cfg, root: Path, *extra: str) -> str:
    with pytest.raises(DataError) as info:
        load(make_cfg, root, *extra)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
def test_paths_outside_the_root_are_refused(tmp_path: Path, make_cfg, kind: str) -> None:
    root = tmp_path / "data" / "set"
    outside = write_image(tmp_path / "secret.png", seed=50)
    path = "../../secret.png" if kind == "dotdot" else str(outside)
    csv = manifest(root, [(path, "x", "p50"), ("sub/../../set/0.png", "x", "p0")])
    message = one_line_error(make_cfg, root)
    assert str(csv) in message and "row 14:" in message and repr(path) in message
    assert f"outside dataset.root={root}" in message and "(1 rows are)" in message
    assert "dataset.allow_outside_root=true" in message

    with pytest.warns(RepeatedRowWarning):  # sub/../../set/0.png is 0.png again
        bundle = load(make_cfg, root, "dataset.allow_outside_root=true")
    assert path in bundle.files and len(bundle.files) == 13


def test_metadata_filename_outside_the_root_is_refused(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "cxr"
    rows = []
    for p in range(8):
        write_image(root / "images" / f"{p}.png", seed=p)
        rows.append((str(p), "COVID-19" if p % 2 else "No Finding", "PA", "X-ray", f"{p}.png"))
    rows.append(("9", "COVID-19", "PA", "X-ray", "../../elsewhere.png"))
    pd.DataFrame(rows, columns=["patientid", "finding", "view", "modality", "filename"]).to_csv(
        root / "metadata.csv", index=False)
    with pytest.raises(DataError) as info:
        load_data(make_cfg("dataset=covid_chestxray", f"dataset.root={root}"))
    message = str(info.value)
    assert "metadata.csv row 10:" in message and "column 'filename'" in message
    assert "'images/../../elsewhere.png'" in message and "allow_outside_root=true" in message


def test_empty_paths_and_labels_name_their_rows(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "r"
    csv = manifest(root, [("", "x", "p20"), ("12.png", "", "p21"), ("  ", "y", "p22")])
    message = one_line_error(make_cfg, root)
    assert f"{csv} rows 14, 16: empty path in column 'path' (2 rows): fill it in or delete " \
           f"those rows" in message
    manifest(root, [("12.png", "", "p21"), ("13.png", " ", "p23")])
    message = one_line_error(make_cfg, root)
    assert f"{csv} rows 14, 15: empty label in column 'label' (2 rows)" in message


def test_repeated_rows_are_dropped_with_one_warning(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "r"
    csv = manifest(root, [("3.png", "y", "p3"), ("./3.png", "y", "p3"), ("5.png", "y", "p5")])
    with pytest.warns(RepeatedRowWarning) as record:
        bundle = load(make_cfg, root)
    assert len(record) == 1
    text = str(record[0].message)
    assert text == (f"{csv}: dropped 3 row(s) that repeat an earlier row for the same file "
                    f"(rows 14, 15, 16); delete them from the CSV to silence this")
    assert sorted(bundle.files) == sorted(f"{i}.png" for i in range(12))


@pytest.mark.parametrize(
    ("row", "column", "values"),
    [(("4.png", "y", "p4"), "label", "'x' and 'y'"),
     (("4.png", "x", "p99"), "patient_id", "'p4' and 'p99'")],
)
def test_conflicting_rows_are_an_error(tmp_path: Path, make_cfg, row, column, values) -> None:
    root = tmp_path / "r"
    csv = manifest(root, [row])
    message = one_line_error(make_cfg, root)
    assert f"{csv} rows 6 and 14 both list '4.png' but with different '{column}'" in message
    assert values in message and f"keep one row per file, with the right {column}" in message


def test_conflicting_given_splits_are_an_error(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "r"
    rows = [(f"{i}.png", "xy"[i % 2], ["train", "val", "test"][i % 3]) for i in range(12)]
    for i in range(12):
        write_image(root / f"{i}.png", seed=i)
    rows.append(("0.png", "x", "test"))
    pd.DataFrame(rows, columns=["path", "label", "split"]).to_csv(root / "m.csv", index=False)
    message = one_line_error(make_cfg, root)
    assert "rows 2 and 14 both list '0.png' but with different 'split'" in message


def test_allow_outside_root_must_be_a_bool(tmp_path: Path, make_cfg) -> None:
    root = tmp_path / "r"
    manifest(root, [])
    with pytest.raises(ConfigError, match="allow_outside_root='yes please'.*true or false"):
        load(make_cfg, root, "dataset.allow_outside_root='yes please'")
