"""A CSV of paths and labels, with optional patient and split columns."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from pipeline.common.errors import DataError
from pipeline.data.layouts.common import SPLIT_ALIASES, Listing, dataset_root
from pipeline.data.layouts.csv_rows import drop_repeats, read_csv, refuse_outside, row_list
from pipeline.data.layouts.fs import require_root

log = logging.getLogger(__name__)


def scan_manifest(ds: DictConfig) -> Listing:
    root = dataset_root(ds)
    require_root(root, "manifest", "a folder the manifest's paths are relative to")
    csv_path = Path(ds.csv).expanduser()
    csv_path = csv_path if csv_path.is_absolute() else root / csv_path
    path_col, label_col = str(ds.path_column), str(ds.label_column)
    frame = read_csv(csv_path, [path_col, label_col], "dataset.csv",
                     "dataset=manifest expects a CSV of paths and labels")

    patients: list[str | None] = [None] * len(frame)
    patient_col = ds.get("patient_column")
    if patient_col and patient_col in frame.columns:
        patients = [p.strip() or None for p in frame[patient_col]]
    elif patient_col:
        log.warning(
            "%s has no column %r: no patient grouping (columns: %s)",
            csv_path, patient_col, ", ".join(frame.columns),
        )

    splits = None
    split_col = ds.get("split_column")
    if split_col and split_col in frame.columns:
        values = [v.strip().lower() for v in frame[split_col]]
        bad = [(n, v) for n, v in enumerate(values) if v not in SPLIT_ALIASES]
        if bad:
            row, value = bad[0]
            raise DataError(
                f"{csv_path} row {row + 2}: column '{split_col}' is {value!r}; every row needs "
                f"train, val or test ({len(bad)} rows do not): fix them, or set "
                f"dataset.split_column=null to split by dataset.val_fraction/test_fraction"
            )
        splits = [SPLIT_ALIASES[v] for v in values]

    labels = [v.strip() for v in frame[label_col]]
    paths = [v.strip() for v in frame[path_col]]
    rows = [int(i) + 2 for i in frame.index]  # the CSV's own line numbers (header = line 1)
    for what, column, values in (("path", path_col, paths), ("label", label_col, labels)):
        empty = [row for row, v in zip(rows, values, strict=True) if not v]
        if empty:
            raise DataError(
                f"{csv_path} {row_list(empty)}: empty {what} in column '{column}' "
                f"({len(empty)} rows): fill it in or delete those rows"
            )
    refuse_outside(ds, root, csv_path, path_col, rows, paths)
    values = {label_col: labels}
    if patient_col and patient_col in frame.columns:
        values[str(patient_col)] = patients
    if splits is not None:
        values[str(split_col)] = splits
    keep = drop_repeats(root, csv_path, rows, paths, values)
    if len(keep) < len(paths):
        paths, labels, patients = ([v[k] for k in keep] for v in (paths, labels, patients))
        splits = [splits[k] for k in keep] if splits is not None else None
    return Listing(root, paths, labels, patients, sorted(set(labels)), splits)
