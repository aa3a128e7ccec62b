"""The dataset as the rest of the pipeline sees it: decoded images, labels, patients, the split and
a fingerprint, built from the composed config. A command loads it once and hands it down (every
trial of a sweep trains on the one bundle): ``DataBundle.serves`` says whether a config names it."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from sklearn.utils.class_weight import compute_class_weight

from pipeline.common.errors import ConfigError, DataError
from pipeline.config import state_dir as resolve_state_dir
from pipeline.data import duplicates, sources
from pipeline.data.duplicates import DuplicateGroup
from pipeline.data.hashing import digest_strings
from pipeline.data.layouts import SCANNERS
from pipeline.data.positives import choose_positive
from pipeline.data.split_cache import cached_splits
from pipeline.data.splits import (
    SPLIT_NAMES,
    patient_overlap,
    split_unit,
    warn_image_split,
)

log = logging.getLogger(__name__)

# Keys that only shape the data loaders: changing them never needs a new bundle.
_LOADER_KEYS = ("batch_size", "num_workers", "sampler")


@dataclass(eq=False)
class DataBundle:
    """Decoded images with labels, patient ids and the split; row i of every array is one image."""

    classes: list[str]  # index = label id
    positive_class: str | None  # binary tasks only
    images: np.ndarray  # (N, S, S) uint8, memory-mapped from the decode cache
    labels: np.ndarray  # (N,) int64
    patients: np.ndarray  # (N,) str; the image's own id where no patient id is known
    split: np.ndarray  # (N,) str in train/val/test
    files: list[str]  # relative to the dataset root
    skipped: list[tuple[str, str]]  # (path, reason) of unreadable files left out
    fingerprint: str
    image_size: int
    name: str = ""
    root: Path | None = None
    images_path: Path | None = field(default=None, repr=False)  # the cache file behind images
    duplicates: list[DuplicateGroup] = field(default_factory=list)  # same image, several rows
    split_unit: str = "patient"  # patient: grouped by patient id; image: no ids were given
    # (N,) what the split keeps together: patients, merged where they share a duplicate image
    groups: np.ndarray | None = field(default=None, repr=False)
    # Cross-validation folds: the train+val rows of the split every fold draws from (None: the
    # bundle's own split); their frozen features are cached once for all folds.
    cv_pool: np.ndarray | None = field(default=None, repr=False)
    fold: str = ""  # "2/5" for the third of five folds
    splits_given: list[str] = field(default_factory=list)  # splits the dataset gave (not carved)
    source: str = field(default="", repr=False)  # what it was built from (``data_key``)

    def serves(self, cfg: DictConfig) -> bool:
        """Whether ``cfg`` names this data (its loader-only keys aside): then it needs no other."""
        return bool(self.source) and self.source == data_key(cfg)

    def indices(self, split: str) -> np.ndarray:
        """Row indices of one split, in order."""
        if split not in SPLIT_NAMES:
            raise ValueError(f"split must be one of {SPLIT_NAMES}, not {split!r}")
        return np.flatnonzero(self.split == split)

    def cache_rows(self, split: str) -> tuple[str, np.ndarray]:
        """(name, rows) of the row set whose frozen features serve ``split``: the split itself,
        or for a fold's train and val the cross-validation pool."""
        if self.cv_pool is not None and split in ("train", "val"):
            return "pool", self.cv_pool
        return split, self.indices(split)

    def class_counts(self, split: str | None = None) -> dict[str, int]:
        """Images per class (every class listed, zeros included), in one split or in all."""
        labels = self.labels if split is None else self.labels[self.indices(split)]
        counts = np.bincount(labels, minlength=len(self.classes))
        return {name: int(c) for name, c in zip(self.classes, counts, strict=True)}

    def class_weights(self) -> torch.Tensor:
        """'Balanced' weights from the train split (n / (classes * count)); 0 for a class absent
        from train, so a loss never divides by zero."""
        train = self.labels[self.indices("train")]
        present = np.unique(train)
        weights = np.zeros(len(self.classes), dtype=np.float64)
        if len(present):
            weights[present] = compute_class_weight("balanced", classes=present, y=train)
        return torch.tensor(weights, dtype=torch.float32)

    def patient_overlap(self) -> int:
        """Patients found in more than one split (0 unless a given split puts them there)."""
        return patient_overlap(self.patients, self.split)

    def duplicates_across_splits(self) -> int:
        """Duplicate groups with rows in more than one split (0 with dataset.on_duplicate=group,
        unless the dataset's given splits put them there)."""
        return len(duplicates.across_splits(self.duplicates, self.split))

    def manifest(self) -> pd.DataFrame:
        """The split manifest: file, label (class name), patient, split.

        File names (and patients taken from them) are object columns: a name that is not UTF-8
        on disk is kept as os.fsdecode gives it (surrogate escapes), which an arrow string column
        refuses.
        """
        return pd.DataFrame(
            {
                "file": pd.Series(self.files, dtype=object),
                "label": [self.classes[i] for i in self.labels],
                "patient": pd.Series(self.patients.tolist(), dtype=object),
                "split": self.split,
            }
        )

    def write_manifest(self, path: str | Path) -> Path:
        """The manifest as CSV; file names that are not UTF-8 on disk keep their own bytes."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.manifest().to_csv(path, index=False, lineterminator="\n", errors="surrogateescape")
        return path

    def summary(self) -> dict:
        """Counts for logs and describe_data's JSON line."""
        per_split = {s: int(np.sum(self.split == s)) for s in SPLIT_NAMES}
        return {
            "dataset": self.name,
            "classes": self.class_counts(),
            "splits": per_split,
            "class_counts": {s: self.class_counts(s) for s in SPLIT_NAMES},
            "patients": {s: len(set(self.patients[self.indices(s)].tolist())) for s in SPLIT_NAMES},
            "patient_overlap": self.patient_overlap(),
            "skipped": len(self.skipped),
            "duplicate_groups": len(self.duplicates),
            "duplicates_across_splits": self.duplicates_across_splits(),
            "positive_class": self.positive_class,
            "split_unit": self.split_unit,
            "splits_given": list(self.splits_given),
            "image_size": self.image_size,
            "fingerprint": self.fingerprint,
        }


def load_data(cfg: DictConfig) -> DataBundle:
    """The bundle of ``cfg.dataset`` under ``cfg``'s state dir (the decode cache serves images
    decoded before)."""
    bundle = build_bundle(cfg.dataset, resolve_state_dir(cfg))
    bundle.source = data_key(cfg)
    return bundle


def data_key(cfg: DictConfig) -> str:
    """What a bundle is built from: the dataset config (loader-only keys aside) and state dir."""
    data = OmegaConf.to_container(cfg.dataset, resolve=True)
    for k in _LOADER_KEYS:
        data.pop(k, None)
    return json.dumps([data, str(resolve_state_dir(cfg))], sort_keys=True, default=str)


def build_bundle(ds: DictConfig, sdir: Path) -> DataBundle:
    """Scan, decode (through the cache), split and fingerprint one dataset config."""
    name = str(ds.get("name"))
    _check_config(ds, name)
    if name == "synthetic":
        rows = sources.from_synthetic(ds, sdir)
    elif name == "medmnist":
        rows = sources.from_medmnist(ds, sdir)
    else:
        rows = sources.from_files(ds, sdir)

    if not len(rows.labels):
        raise DataError(f"dataset={name} has no images (root: {rows.root})")
    counts = np.bincount(rows.labels, minlength=len(rows.classes))
    empty = [c for c, n in zip(rows.classes, counts, strict=True) if n == 0]
    if empty:
        raise DataError(
            f"class '{empty[0]}' of dataset={name} has no images"
            f"{f' ({len(rows.skipped)} unreadable files skipped)' if rows.skipped else ''}"
            f" (root: {rows.root}): add images of it or leave it out of the dataset config"
        )
    patients = np.asarray(rows.patients, dtype=str)
    bits = ds.get("near_duplicate_bits", duplicates.DEFAULT_BITS)
    found = duplicates.find_in(rows.images, rows.images_path, rows.content,
                               None if bits is None else int(bits))
    policy = str(ds.get("on_duplicate", "group"))
    if policy == "error":
        duplicates.refuse(found, patients, rows.files, rows.root)
    groups = duplicates.merge_patients(patients, found) if policy == "group" else patients
    split = cached_splits(
        sdir,
        rows.labels,
        groups,
        rows.classes,
        float(ds.val_fraction),
        float(ds.test_fraction),
        int(ds.seed),
        rows.given,
    )
    unit = split_unit(rows.patient_known)
    if unit == "image":
        warn_image_split(name)
    bundle = DataBundle(
        classes=list(rows.classes),
        positive_class=choose_positive(ds.get("positive_class"), list(rows.classes)),
        images=rows.images,
        labels=rows.labels,
        patients=patients,
        split=split,
        files=list(rows.files),
        skipped=list(rows.skipped),
        fingerprint="",
        image_size=int(ds.image_size),
        name=name,
        root=rows.root,
        images_path=rows.images_path,
        duplicates=found,
        split_unit=unit,
        groups=groups,
        splits_given=sorted(set(rows.given.tolist())) if rows.given is not None else [],
    )
    duplicates.warn_about(found, policy, split, rows.labels, rows.classes, rows.files, rows.root)
    manifest_csv = bundle.manifest().to_csv(index=False, lineterminator="\n")
    bundle.fingerprint = digest_strings([manifest_csv, rows.image_digest])[:16]
    log.info("dataset %s: %s", name, json.dumps(bundle.summary()))
    return bundle


def _check_config(ds: DictConfig, name: str) -> None:
    """What the schema (pipeline.config.schema) cannot know: the layouts there are, that a
    dataset used needs its root, the least image the data layer makes (a network may take
    smaller ones)."""
    known = sorted([*SCANNERS, "synthetic", "medmnist"])
    if name not in known:
        raise ConfigError(f"dataset.name={name!r} is not a known layout: use one of {known}")
    if name != "synthetic" and OmegaConf.is_missing(ds, "root"):
        raise ConfigError(f"dataset.root is not set: pass dataset.root=<folder of the {name} data>")
    for key in ("csv",):
        if key in ds and OmegaConf.is_missing(ds, key):
            raise ConfigError(f"dataset.{key} is not set: pass dataset.{key}=<path>")
    size = int(ds.image_size)
    if size < 8:
        raise ConfigError(f"dataset.image_size={size!r} must be an integer of at least 8 pixels")
