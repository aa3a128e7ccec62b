"""Cross-validation folds: patient-disjoint, stratified, duplicates kept together, and the test
split untouched by every fold."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.common.errors import DataError
from pipeline.data.bundle import load_data
from pipeline.data.folds import fold_bundle, fold_of_rows


def test_folds_are_patient_disjoint_stratified_and_never_hold_a_test_image(make_cfg):
    bundle = load_data(make_cfg("dataset.num_images=150", "dataset.image_size=32",
                                "dataset.images_per_patient=3"))
    folds = fold_of_rows(bundle, 5, seed=42)
    test = bundle.split == "test"
    assert np.all(folds[test] == -1) and np.all(folds[~test] >= 0)
    assert sorted(set(folds[~test].tolist())) == [0, 1, 2, 3, 4]
    owner: dict[str, int] = {}
    for patient, fold in zip(bundle.patients[~test].tolist(), folds[~test].tolist(),
                             strict=True):
        assert owner.setdefault(patient, fold) == fold  # one patient, one fold
    for fold in range(5):
        view = fold_bundle(bundle, folds, fold)
        assert np.array_equal(view.split == "test", test)  # the test split as k=1 has it
        assert np.array_equal(view.indices("test"), bundle.indices("test"))
        assert set(bundle.labels[view.indices("val")].tolist()) == set(range(3))  # stratified
        assert view.fingerprint == bundle.fingerprint and view.fold == f"{fold}/5"
        assert np.array_equal(view.cv_pool, np.flatnonzero(~test))
        assert not set(view.patients[view.indices("val")]) & set(
            view.patients[view.indices("train")])
    again = fold_of_rows(bundle, 5, seed=42)
    assert np.array_equal(folds, again)


def test_folds_keep_a_duplicate_group_together(make_cfg):
    bundle = load_data(make_cfg("dataset.num_images=90", "dataset.image_size=32"))
    # Two patients sharing an image count as one group, as the split counts them.
    groups = bundle.groups.copy()
    pool = np.flatnonzero(bundle.split != "test")
    a, b = bundle.patients[pool[0]], bundle.patients[pool[-1]]
    groups[bundle.patients == b] = a
    bundle.groups = groups
    bundle.fingerprint = bundle.fingerprint + "-merged"  # another assignment to compute
    folds = fold_of_rows(bundle, 3, seed=1)
    assert len(set(folds[(bundle.patients == a) | (bundle.patients == b)].tolist())) == 1


def test_too_few_patients_for_the_folds_is_one_clear_error(make_cfg):
    bundle = load_data(make_cfg("dataset.num_images=30", "dataset.image_size=32"))
    with pytest.raises(DataError, match="too few for 20 folds.*lower sweep.cv_folds"):
        fold_of_rows(bundle, 20, seed=0)
