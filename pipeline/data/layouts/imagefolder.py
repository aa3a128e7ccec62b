"""One folder per class, or train/val/test folders of class folders (Kermany's chest_xray)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pipeline.common.errors import DataError
from pipeline.data.layouts.common import (
    SPLIT_ALIASES,
    Listing,
    Passed,
    dataset_root,
    normalise_class,
)
from pipeline.data.layouts.fs import (
    compile_pattern,
    files_under,
    nested_hint,
    patient_from_name,
    rel,
    require_root,
    root_subdirs,
    subdirs,
)

_IMAGEFOLDER = "one folder per class under root, or root/{train,val,test}/<class>/"


def scan_imagefolder(ds: DictConfig) -> Listing:
    root = dataset_root(ds)
    require_root(root, "imagefolder", _IMAGEFOLDER)
    pattern = compile_pattern(ds.get("patient_pattern"), "dataset.patient_pattern")
    passed = Passed(root)
    top = root_subdirs(root, "imagefolder", passed)
    split_dirs = [d for d in top if d.name.lower() in SPLIT_ALIASES]
    if split_dirs:
        others = [d.name for d in top if d not in split_dirs]
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
        for class_dir in subdirs(base, passed) if split else top:
            name = normalise_class(class_dir.name)
            for other_split, other in by_class.get(name, []):
                if other_split == split and other != class_dir:
                    raise DataError(
                        f"{class_dir} and {other} both name class '{name}' once normalised "
                        f"(lower case, '_' for other characters): merge or rename one"
                    )
            by_class.setdefault(name, []).append((split, class_dir))
    if not by_class:
        hint = nested_hint(root, lambda d: bool(subdirs(d)))
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
            for path in files_under(class_dir, passed):
                listing.files.append(rel(path, root))
                listing.labels.append(name)
                listing.patients.append(patient_from_name(pattern, path.name))
                if listing.splits is not None:
                    listing.splits.append(split)
    passed.report()
    return listing
