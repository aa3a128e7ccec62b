"""The Kaggle COVID-19 Radiography Database: a folder per class, each with its images/."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from pipeline.common.errors import ConfigError, DataError
from pipeline.data.layouts.common import Listing, Passed, dataset_root, normalise_class
from pipeline.data.layouts.fs import (
    compile_pattern,
    files_under,
    nested_hint,
    patient_from_name,
    rel,
    require_root,
    root_subdirs,
)

_RADIOGRAPHY = "COVID/, Normal/, Viral Pneumonia/, Lung_Opacity/ with each class's images/"


def scan_covid19_radiography(ds: DictConfig) -> Listing:
    root = dataset_root(ds)
    require_root(root, "covid19_radiography", _RADIOGRAPHY)
    class_dirs = OmegaConf.to_container(ds.class_dirs) if ds.get("class_dirs") else {}
    if not class_dirs:
        raise ConfigError("dataset.class_dirs is empty: map class names to folders under root")
    passed = Passed(root)
    found = [d.name for d in root_subdirs(root, "covid19_radiography", passed)]
    missing = [str(folder) for folder in class_dirs.values() if not (root / folder).is_dir()]
    if missing:
        hint = nested_hint(root, lambda d: all((d / f).is_dir() for f in class_dirs.values()))
        raise DataError(
            f"dataset.root={root} lacks the class folder(s) {missing} (dataset=covid19_radiography "
            f"expects {_RADIOGRAPHY}; found {found}): point dataset.root at the extracted "
            f"database, or drop a class with ~dataset.class_dirs.<name>{hint}"
        )
    pattern = compile_pattern(ds.get("patient_pattern"), "dataset.patient_pattern")
    classes = [normalise_class(str(name)) for name in class_dirs]
    listing = Listing(root, [], [], [], classes)
    for name, folder in zip(classes, class_dirs.values(), strict=True):
        class_dir = root / folder
        # Newer releases keep images/ and masks/ per class; the first ones had the files directly.
        image_dir = class_dir / "images" if (class_dir / "images").is_dir() else class_dir
        for path in files_under(image_dir, passed, recursive=False):
            listing.files.append(rel(path, root))
            listing.labels.append(name)
            listing.patients.append(patient_from_name(pattern, path.name))
    passed.report()
    return listing
