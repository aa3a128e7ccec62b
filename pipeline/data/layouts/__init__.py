"""On-disk dataset layouts: one scanner per layout turns ``cfg.dataset`` into a Listing of files
with their labels, patients and (when the layout gives them) splits. Nothing is decoded here.

Errors name the root, the layout that was expected and what to change.
"""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig

from pipeline.data.layouts.common import (
    SPLIT_ALIASES,
    SPLITS,
    DataWarning,
    Listing,
    RepeatedRowWarning,
    TreeWarning,
    dataset_root,
    normalise_class,
    printable,
    some,
)
from pipeline.data.layouts.covid19_radiography import scan_covid19_radiography
from pipeline.data.layouts.covid_chestxray import scan_covid_chestxray
from pipeline.data.layouts.csv_rows import read_csv
from pipeline.data.layouts.imagefolder import scan_imagefolder
from pipeline.data.layouts.manifest import scan_manifest

SCANNERS: dict[str, Callable[[DictConfig], Listing]] = {
    "imagefolder": scan_imagefolder,
    "covid19_radiography": scan_covid19_radiography,
    "covid_chestxray": scan_covid_chestxray,
    "manifest": scan_manifest,
}

__all__ = [
    "SCANNERS",
    "SPLITS",
    "SPLIT_ALIASES",
    "DataWarning",
    "Listing",
    "RepeatedRowWarning",
    "TreeWarning",
    "dataset_root",
    "normalise_class",
    "printable",
    "read_csv",
    "some",
]
