"""Walking a dataset tree safely: hidden clutter, symlink loops and unlistable folders."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from pipeline.common.errors import ConfigError, DataError
from pipeline.data.layouts.common import JUNK, Passed


def visible(name: str) -> bool:
    return not name.startswith(".") and name not in JUNK


def is_loop(path: Path) -> bool:
    """A symlink to the folder that holds it or to one above it: following it never ends."""
    if not path.is_symlink():
        return False
    target = os.path.realpath(path)
    parent = os.path.realpath(path.parent)
    return parent == target or parent.startswith(target.rstrip(os.sep) + os.sep)


LOOP = "symlink loop: it links back to a folder above it"


def subdirs(folder: Path, passed: Passed | None = None) -> list[Path]:
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
        if not visible(path.name) or not path.is_dir():
            continue
        if is_loop(path):
            if passed is not None:
                passed.note(path, LOOP)
        else:
            found.append(path)
    return found


def files_under(folder: Path, passed: Passed, recursive: bool = True) -> list[Path]:
    """Files below ``folder`` in a stable order. Symlinked folders are not followed (noted in
    ``passed``); links to files are kept, so a broken or looping one is reported as unreadable."""
    if not recursive:
        try:
            entries = sorted(folder.iterdir())
        except OSError as exc:
            passed.note(folder, f"cannot be listed: {exc.strerror or exc}")
            return []
        return [p for p in entries if visible(p.name) and not p.is_dir()]

    def unlistable(exc: OSError) -> None:
        passed.note(exc.filename or folder, f"cannot be listed: {exc.strerror or exc}")

    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=unlistable):
        shown = sorted(d for d in dirnames if visible(d))
        for name in shown:
            link = Path(dirpath) / name
            if link.is_symlink():
                passed.note(link, LOOP if is_loop(link) else "symlinked folder, not followed")
        dirnames[:] = [d for d in shown if not (Path(dirpath) / d).is_symlink()]
        found.extend(Path(dirpath) / f for f in sorted(filenames) if visible(f))
    return found


def rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def require_root(root: Path, layout: str, expected: str) -> None:
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DataError(
            f"dataset.root={root} {what} (dataset={layout} expects {expected}): "
            f"set dataset.root=<the dataset folder>"
        )


def root_subdirs(root: Path, layout: str, passed: Passed) -> list[Path]:
    """The root's sub-folders; a root that cannot be listed is an error, not an empty dataset."""
    try:
        os.listdir(root)
    except OSError as exc:
        raise DataError(
            f"dataset.root={root} cannot be listed ({exc.strerror or exc}; dataset={layout}): "
            f"make it readable (chmod a+rx) or point dataset.root at a copy you can read"
        ) from exc
    return subdirs(root, passed)


def nested_hint(root: Path, looks_right: Callable[[Path], bool]) -> str:
    """'did you mean …' when the layout sits one folder down (a zip's top folder)."""
    try:
        for sub in subdirs(root):
            if looks_right(sub):
                return f"; did you mean dataset.root={sub}?"
    except OSError:
        pass
    return ""


def patient_from_name(pattern: re.Pattern[str] | None, file_name: str) -> str | None:
    if pattern is None:
        return None
    match = pattern.search(file_name)
    if match is None:
        return None
    return match.group(1) if pattern.groups else match.group(0)


def compile_pattern(pattern: str | None, key: str) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{key}={pattern!r} is not a valid regular expression: {exc}") from exc
