"""Cross-validation folds of a split's train and val patients, stratified by class and grouped by
patient (duplicates merged, as the split merges them). The test split is never touched: every
fold keeps it as it is, so a k-fold study is tested on the same patients as a single split."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from pipeline.common.errors import DataError
from pipeline.data.bundle import DataBundle


def fold_of_rows(bundle: DataBundle, k: int, seed: int) -> np.ndarray:
    """(N,) fold number of every train or val row, -1 for test rows."""
    k, seed = int(k), int(seed)
    pool = np.flatnonzero(bundle.split != "test")
    groups = bundle.groups if bundle.groups is not None else bundle.patients
    labels = bundle.labels[pool]
    for label, name in enumerate(bundle.classes):
        count = len(np.unique(groups[pool][labels == label]))
        if count < k:
            raise DataError(
                f"class '{name}' has {count} patients outside the test split, too few for "
                f"{k} folds (each fold needs one of every class): lower sweep.cv_folds"
            )
    folds = np.full(len(bundle.labels), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed % (2**32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class": checked above
        for fold, (_, held) in enumerate(splitter.split(pool, labels, groups[pool])):
            folds[pool[held]] = fold
    return folds


def fold_bundle(bundle: DataBundle, folds: np.ndarray, fold: int) -> DataBundle:
    """The bundle as fold ``fold`` of ``folds`` (``fold_of_rows``) sees it: that fold's patients
    are val, the other folds' train, test as it was. Images, fingerprint and patients are the
    bundle's own; the view serves no config (its split is not the config's)."""
    k = int(folds.max()) + 1
    split = np.where(folds < 0, "test", np.where(folds == fold, "val", "train")).astype(str)
    return dataclasses.replace(bundle, split=split, cv_pool=np.flatnonzero(folds >= 0),
                               fold=f"{fold}/{k}", source="")
