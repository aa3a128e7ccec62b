"""What every layout scanner shares: the Listing it returns, its warnings, names as printed."""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val"}
SPLIT_ALIASES["test"] = "test"
# Left out of every folder scan: OS and archive clutter, never data.
JUNK = {"__MACOSX", "Thumbs.db", "desktop.ini"}
SHOW = 3  # paths, rows or pairs named in a one-line message


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


def some(items: list[str], show: int = SHOW) -> str:
    """The first few of ``items`` joined, with '… and N more'."""
    rest = f" and {len(items) - show} more" if len(items) > show else ""
    return ", ".join(items[:show]) + rest


@dataclass
class Passed:
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
