"""Reading a layout's CSV: one-line errors for missing columns, outside paths, repeated rows."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from pipeline.common.errors import DataError
from pipeline.common.files import not_regular
from pipeline.data.layouts.common import RepeatedRowWarning, some


def read_csv(path: Path, required: list[str], what: str, layout: str) -> pd.DataFrame:
    """A CSV as strings (empty cells as ''), with a one-line error for a missing column."""
    kind = not_regular(path)
    if kind is not None:  # a FIFO would block the CSV reader forever: never opened
        raise DataError(f"{what} {path} is {kind}, not a regular file ({layout}): point {what} "
                        f"at the CSV file itself")
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist ({layout}): check dataset.root and {what}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise DataError(f"{what} {path} is not a readable CSV ({reason})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(
            f"{what} {path} has no column {', '.join(repr(c) for c in missing)} "
            f"(columns found: {', '.join(frame.columns)})"
        )
    return frame


def row_list(rows: list[int]) -> str:
    """CSV row numbers for a message: 'row 5' or 'rows 5, 9, 12 and 4 more'."""
    return f"row {rows[0]}" if len(rows) == 1 else f"rows {some([str(r) for r in rows])}"


def outside(root: Path, path: str) -> bool:
    """Whether ``path`` (relative to root, or absolute) lands outside root once '..' is folded."""
    full = os.path.normpath(os.path.join(root, path))
    return not (full + os.sep).startswith(str(root).rstrip(os.sep) + os.sep)


def refuse_outside(ds: DictConfig, root: Path, csv_path: Path, column: str, rows: list[int],
                    paths: list[str]) -> None:
    """Paths of a CSV stay under dataset.root unless dataset.allow_outside_root=true."""
    if ds.get("allow_outside_root", False):
        return
    bad = [(row, path) for row, path in zip(rows, paths, strict=True) if outside(root, path)]
    if bad:
        raise DataError(
            f"{csv_path} {row_list([row for row, _ in bad])}: path {bad[0][1]!r} (column "
            f"'{column}') is outside dataset.root={root} ({len(bad)} rows are): fix the paths or "
            f"move the files under the root, or set dataset.allow_outside_root=true to read "
            f"them where they are"
        )


def drop_repeats(root: Path, csv_path: Path, rows: list[int], paths: list[str],
                  values: dict[str, list]) -> list[int]:
    """Positions to keep: the first row of each file. A later row that repeats it (same values in
    every column of ``values``) is dropped with one warning; one that differs is an error."""
    first: dict[str, int] = {}
    repeats: list[int] = []
    conflicts: list[tuple[int, int, str]] = []
    for k, path in enumerate(paths):
        j = first.setdefault(os.path.normpath(os.path.join(root, path)), k)
        if j == k:
            continue
        differ = [column for column, vals in values.items() if vals[k] != vals[j]]
        if differ:
            conflicts.append((j, k, differ[0]))
        else:
            repeats.append(k)
    if conflicts:
        j, k, column = conflicts[0]
        a, b = values[column][j], values[column][k]
        raise DataError(
            f"{csv_path} rows {rows[j]} and {rows[k]} both list {paths[k]!r} but with different "
            f"'{column}' ({a!r} and {b!r}; {len(conflicts)} rows conflict like this): keep one row "
            f"per file, with the right {column}"
        )
    if repeats:
        warnings.warn(
            f"{csv_path}: dropped {len(repeats)} row(s) that repeat an earlier row for the same "
            f"file ({row_list([rows[k] for k in repeats])}); delete them from the CSV to silence "
            f"this",
            RepeatedRowWarning,
            stacklevel=3,
        )
    dropped = set(repeats)
    return [k for k in range(len(paths)) if k not in dropped]
