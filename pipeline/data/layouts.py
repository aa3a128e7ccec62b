"""One scanner per on-disk dataset layout: each turns ``cfg.dataset`` into a Listing of files with
their labels, patients and (when the layout gives them) splits. Nothing is decoded here.

Errors name the root, the layout that was expected and what to change.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from pipeline.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val"}
SPLIT_ALIASES["test"] = "test"
# Left out of every folder scan: OS and archive clutter, never data.
_JUNK = {"__MACOSX", "Thumbs.db", "desktop.ini"}
_SHOW = 3  # paths, rows or pairs named in a one-line message


class DataWarning(UserWarning):
    """Something in the dataset was passed over or dropped; the message says what and how to fix."""


class TreeWarning(DataWarning):
    """Folders of the dataset tree were not read: symlink loops, symlinked or unlistable folders."""


class RepeatedRowWarning(DataWarning):
    """A CSV listed the same file twice with the same values; the repeats were dropped."""


def printable(text: str) -> str:
    """A path as a strict UTF-8 stream can print it: undecodable bytes of a file name (kept as
    surrogates by os.fsdecode) are shown as \\xNN escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def some(items: list[str], show: int = _SHOW) -> str:
    """The first few of ``items`` joined, with '… and N more'."""
    rest = f" and {len(items) - show} more" if len(items) > show else ""
    return ", ".join(items[:show]) + rest


@dataclass
class _Passed:
    """Folders a scan did not read, reported once, as one TreeWarning line, when it ends."""

    root: Path
    folders: list[str] = field(default_factory=list)

    def note(self, path: str | os.PathLike[str], why: str) -> None:
        rel = os.path.relpath(path, self.root)
        self.folders.append(f"{printable(rel)} ({why})")

    def report(self) -> None:
        if self.folders:
            warnings.warn(
                f"did not read {len(self.folders)} folder(s) under {printable(str(self.root))}: "
                f"{some(self.folders)}; if their images belong in the dataset, replace a link "
                f"with the real folder or make the folder readable (chmod a+rx)",
                TreeWarning,
                stacklevel=3,
            )


@dataclass
class Listing:
    """What a scanner found: row i is ``root / files[i]``."""

    root: Path
    files: list[str]
    labels: list[str]
    patients: list[str | None]  # None: no patient id known (the image is its own group)
    classes: list[str]  # label order: index = label id
    splits: list[str] | None = None  # given per row (Kermany folders, a manifest's split column)
    filters: str = ""  # the filters applied, for the "nothing left" message


def dataset_root(ds: DictConfig) -> Path:
    """dataset.root as an absolute, normalised path (``..`` folded, ``~`` expanded)."""
    return Path(os.path.abspath(os.path.expanduser(str(ds.root))))


def normalise_class(name: str) -> str:
    """Folder names as class names: lower case, runs of other characters as one underscore."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_") or name


def _visible(name: str) -> bool:
    return not name.startswith(".") and name not in _JUNK


def _is_loop(path: Path) -> bool:
    """A symlink to the folder that holds it or to one above it: following it never ends."""
    if not path.is_symlink():
        return False
    target = os.path.realpath(path)
    parent = os.path.realpath(path.parent)
    return parent == target or parent.startswith(target.rstrip(os.sep) + os.sep)


_LOOP = "symlink loop: it links back to a folder above it"


def _subdirs(folder: Path, passed: _Passed | None = None) -> list[Path]:
    """Visible sub-folders in order; a symlink that loops back up the tree is passed over."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        if passed is None:
            raise
        passed.note(folder, f"cannot be listed: {exc.strerror or exc}")
        return []
    found = []
    for path in entries:
        if not _visible(path.name) or not path.is_dir():
            continue
        if _is_loop(path):
            if passed is not None:
                passed.note(path, _LOOP)
        else:
            found.append(path)
    return found


def _files_under(folder: Path, passed: _Passed, recursive: bool = True) -> list[Path]:
    """Files below ``folder`` in a stable order. Symlinked folders are not followed (noted in
    ``passed``); links to files are kept, so a broken or looping one is reported as unreadable."""
    if not recursive:
        try:
            entries = sorted(folder.iterdir())
        except OSError as exc:
            passed.note(folder, f"cannot be listed: {exc.strerror or exc}")
            return []
        return [p for p in entries if _visible(p.name) and not p.is_dir()]

    def unlistable(exc: OSError) -> None:
        passed.note(exc.filename or folder, f"cannot be listed: {exc.strerror or exc}")

    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=unlistable):
        visible = sorted(d for d in dirnames if _visible(d))
        for name in visible:
            link = Path(dirpath) / name
            if link.is_symlink():
                passed.note(link, _LOOP if _is_loop(link) else "symlinked folder, not followed")
        dirnames[:] = [d for d in visible if not (Path(dirpath) / d).is_symlink()]
        found.extend(Path(dirpath) / f for f in sorted(filenames) if _visible(f))
    return found


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _require_root(root: Path, layout: str, expected: str) -> None:
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DataError(
            f"dataset.root={root} {what} (dataset={layout} expects {expected}): "
            f"set dataset.root=<the dataset folder>"
        )


def _root_subdirs(root: Path, layout: str, passed: _Passed) -> list[Path]:
    """The root's sub-folders; a root that cannot be listed is an error, not an empty dataset."""
    try:
        os.listdir(root)
    except OSError as exc:
        raise DataError(
            f"dataset.root={root} cannot be listed ({exc.strerror or exc}; dataset={layout}): "
            f"make it readable (chmod a+rx) or point dataset.root at a copy you can read"
        ) from exc
    return _subdirs(root, passed)


def _nested_hint(root: Path, looks_right: Callable[[Path], bool]) -> str:
    """'did you mean …' when the layout sits one folder down (a zip's top folder)."""
    try:
        for sub in _subdirs(root):
            if looks_right(sub):
                return f"; did you mean dataset.root={sub}?"
    except OSError:
        pass
    return ""


def _patient_from_name(pattern: re.Pattern[str] | None, file_name: str) -> str | None:
    if pattern is None:
        return None
    match = pattern.search(file_name)
    if match is None:
        return None
    return match.group(1) if pattern.groups else match.group(0)


def _compile(pattern: str | None, key: str) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{key}={pattern!r} is not a valid regular expression: {exc}") from exc


# --- imagefolder ------------------------------------------------------------------------------

_IMAGEFOLDER = "one folder per class under root, or root/{train,val,test}/<class>/"


def scan_imagefolder(ds: DictConfig) -> Listing:
    root = dataset_root(ds)
    _require_root(root, "imagefolder", _IMAGEFOLDER)
    pattern = _compile(ds.get("patient_pattern"), "dataset.patient_pattern")
    passed = _Passed(root)
    subdirs = _root_subdirs(root, "imagefolder", passed)
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_ALIASES]
    if split_dirs:
        others = [d.name for d in subdirs if d not in split_dirs]
        if others:
            names = ", ".join(d.name for d in split_dirs)
            raise DataError(
                f"dataset.root={root} mixes split folders ({names}) "
                f"with other folders ({', '.join(others)}); dataset=imagefolder expects "
                f"{_IMAGEFOLDER}: move or remove the others"
            )
        groups = [(SPLIT_ALIASES[d.name.lower()], d) for d in split_dirs]
    else:
        groups = [(None, root)]

    by_class: dict[str, list[tuple[str | None, Path]]] = {}
    for split, base in groups:
        for class_dir in _subdirs(base, passed) if split else subdirs:
            name = normalise_class(class_dir.name)
            for other_split, other in by_class.get(name, []):
                if other_split == split and other != class_dir:
                    raise DataError(
                        f"{class_dir} and {other} both name class '{name}' once normalised "
                        f"(lower case, '_' for other characters): merge or rename one"
                    )
            by_class.setdefault(name, []).append((split, class_dir))
    if not by_class:
        hint = _nested_hint(root, lambda d: bool(_subdirs(d)))
        raise DataError(
            f"dataset.root={root} has no class folders (dataset=imagefolder expects "
            f"{_IMAGEFOLDER}){hint}"
        )

    classes = sorted(by_class)
    wanted = ds.get("classes")
    if wanted:
        wanted = [normalise_class(str(c)) for c in wanted]
        unknown = [c for c in wanted if c not in by_class]
        if unknown:
            raise DataError(
                f"dataset.classes names {unknown} but {root} has class folders {classes}: "
                f"fix dataset.classes (folder names, lower case)"
            )
        classes = wanted

    listing = Listing(root, [], [], [], classes, [] if split_dirs else None)
    for name in classes:
        for split, class_dir in by_class[name]:
            for path in _files_under(class_dir, passed):
                listing.files.append(_rel(path, root))
                listing.labels.append(name)
                listing.patients.append(_patient_from_name(pattern, path.name))
                if listing.splits is not None:
                    listing.splits.append(split)
    passed.report()
    return listing


# --- covid19_radiography ----------------------------------------------------------------------

_RADIOGRAPHY = "COVID/, Normal/, Viral Pneumonia/, Lung_Opacity/ with each class's images/"


def scan_covid19_radiography(ds: DictConfig) -> Listing:
    root = dataset_root(ds)
    _require_root(root, "covid19_radiography", _RADIOGRAPHY)
    class_dirs = OmegaConf.to_container(ds.class_dirs) if ds.get("class_dirs") else {}
    if not class_dirs:
        raise ConfigError("dataset.class_dirs is empty: map class names to folders under root")
    passed = _Passed(root)
    found = [d.name for d in _root_subdirs(root, "covid19_radiography", passed)]
    missing = [str(folder) for folder in class_dirs.values() if not (root / folder).is_dir()]
    if missing:
        hint = _nested_hint(root, lambda d: all((d / f).is_dir() for f in class_dirs.values()))
        raise DataError(
            f"dataset.root={root} lacks the class folder(s) {missing} (dataset=covid19_radiography "
            f"expects {_RADIOGRAPHY}; found {found}): point dataset.root at the extracted "
            f"database, or drop a class with ~dataset.class_dirs.<name>{hint}"
        )
    pattern = _compile(ds.get("patient_pattern"), "dataset.patient_pattern")
    classes = [normalise_class(str(name)) for name in class_dirs]
    listing = Listing(root, [], [], [], classes)
    for name, folder in zip(classes, class_dirs.values(), strict=True):
        class_dir = root / folder
        # Newer releases keep images/ and masks/ per class; the first ones had the files directly.
        image_dir = class_dir / "images" if (class_dir / "images").is_dir() else class_dir
        for path in _files_under(image_dir, passed, recursive=False):
            listing.files.append(_rel(path, root))
            listing.labels.append(name)
            listing.patients.append(_patient_from_name(pattern, path.name))
    passed.report()
    return listing


# --- covid_chestxray --------------------------------------------------------------------------

_CHESTXRAY = "metadata.csv and images/ (ieee8023 covid-chestxray-dataset)"


def read_csv(path: Path, required: list[str], what: str, layout: str) -> pd.DataFrame:
    """A CSV as strings (empty cells as ''), with a one-line error for a missing column."""
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


def _outside(root: Path, path: str) -> bool:
    """Whether ``path`` (relative to root, or absolute) lands outside root once '..' is folded."""
    full = os.path.normpath(os.path.join(root, path))
    return not (full + os.sep).startswith(str(root).rstrip(os.sep) + os.sep)


def _refuse_outside(ds: DictConfig, root: Path, csv_path: Path, column: str, rows: list[int],
                    paths: list[str]) -> None:
    """Paths of a CSV stay under dataset.root unless dataset.allow_outside_root=true."""
    if ds.get("allow_outside_root", False):
        return
    bad = [(row, path) for row, path in zip(rows, paths, strict=True) if _outside(root, path)]
    if bad:
        raise DataError(
            f"{csv_path} {row_list([row for row, _ in bad])}: path {bad[0][1]!r} (column "
            f"'{column}') is outside dataset.root={root} ({len(bad)} rows are): fix the paths or "
            f"move the files under the root, or set dataset.allow_outside_root=true to read "
            f"them where they are"
        )


def _drop_repeats(root: Path, csv_path: Path, rows: list[int], paths: list[str],
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


def scan_covid_chestxray(ds: DictConfig) -> Listing:
    root = dataset_root(ds)
    _require_root(root, "covid_chestxray", _CHESTXRAY)
    modalities = list(ds.modalities) if ds.get("modalities") else None
    views = list(ds.views) if ds.get("views") else None
    required = ["patientid", "finding", "filename"]
    required += ["modality"] * bool(modalities) + ["view"] * bool(views)
    frame = read_csv(root / ds.metadata, required, "dataset.metadata",
                     f"dataset=covid_chestxray expects {_CHESTXRAY}")

    steps: list[str] = [f"{len(frame)} rows"]
    finding = frame["finding"].str.strip()
    frame = frame[(finding != "") & (finding.str.lower() != "todo")]
    steps.append(f"finding not todo/empty: {len(frame)}")
    if modalities:
        frame = frame[frame["modality"].str.strip().isin(modalities)]
        steps.append(f"modality in {modalities}: {len(frame)}")
    if views:
        frame = frame[frame["view"].str.strip().isin(views)]
        steps.append(f"view in {views}: {len(frame)}")

    rules = [(str(r.pattern).lower(), str(r.label)) for r in ds.get("label_rules") or []]
    default = ds.get("default_label")
    labels = [_first_rule(f, rules, default) for f in frame["finding"].str.lower()]
    frame = frame.loc[[label is not None for label in labels]]
    labels = [label for label in labels if label is not None]
    steps.append(f"label_rules/default_label: {len(frame)}")

    named = [label for _, label in rules] + ([str(default)] if default else [])
    classes = list(dict.fromkeys(named))
    csv_path = root / ds.metadata
    rows = [int(i) + 2 for i in frame.index]  # the CSV's own line numbers (header = line 1)
    image_dir = str(ds.image_dir)
    paths = [os.path.join(image_dir, name.strip()) for name in frame["filename"]]
    _refuse_outside(ds, root, csv_path, "filename", rows, paths)
    patients = [p.strip() or None for p in frame["patientid"]]
    keep = _drop_repeats(root, csv_path, rows, paths,
                         {"finding": labels, "patientid": patients})
    files = [_as_listed(root, paths[k]) for k in keep]
    return Listing(root, files, [labels[k] for k in keep], [patients[k] for k in keep], classes,
                   filters=" -> ".join(steps))


def _as_listed(root: Path, path: str) -> str:
    """A file as the Listing keeps it: relative to root (as before), or as given when outside."""
    try:
        return _rel(root / path, root)
    except ValueError:
        return path


def _first_rule(finding: str, rules: list[tuple[str, str]], default: str | None) -> str | None:
    for pattern, label in rules:
        if pattern in finding:
            return label
    return str(default) if default else None


# --- manifest ---------------------------------------------------------------------------------


def scan_manifest(ds: DictConfig) -> Listing:
    root = dataset_root(ds)
    _require_root(root, "manifest", "a folder the manifest's paths are relative to")
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
    _refuse_outside(ds, root, csv_path, path_col, rows, paths)
    values = {label_col: labels}
    if patient_col and patient_col in frame.columns:
        values[str(patient_col)] = patients
    if splits is not None:
        values[str(split_col)] = splits
    keep = _drop_repeats(root, csv_path, rows, paths, values)
    if len(keep) < len(paths):
        paths, labels, patients = ([v[k] for k in keep] for v in (paths, labels, patients))
        splits = [splits[k] for k in keep] if splits is not None else None
    return Listing(root, paths, labels, patients, sorted(set(labels)), splits)


SCANNERS: dict[str, Callable[[DictConfig], Listing]] = {
    "imagefolder": scan_imagefolder,
    "covid19_radiography": scan_covid19_radiography,
    "covid_chestxray": scan_covid_chestxray,
    "manifest": scan_manifest,
}
