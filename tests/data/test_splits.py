"""Split invariants: no patient in two splits, stratification roughly held, deterministic for a
seed, given splits kept."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.common.errors import DataError
from pipeline.data.splits import assign_splits, patient_overlap

CLASSES = ["normal", "covid", "pneumonia"]


def cohort(patients: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """1-5 images per patient, one label per patient, classes 60/25/15 %."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for p in range(patients):
        label = rng.choice(3, p=[0.6, 0.25, 0.15])
        for _ in range(rng.integers(1, 6)):
            labels.append(label)
            groups.append(f"pt{p}")
    return np.array(labels, dtype=np.int64), np.array(groups)


def test_no_patient_in_two_splits_and_classes_stratified() -> None:
    labels, groups = cohort()
    split = assign_splits(labels, groups, CLASSES, 0.2, 0.2, seed=7)
    assert patient_overlap(groups, split) == 0
    overall = np.bincount(labels, minlength=3) / len(labels)
    for name in ("train", "val", "test"):
        part = labels[split == name]
        assert 0.1 < len(part) / len(labels) < 0.7
        share = np.bincount(part, minlength=3) / len(part)
        assert np.all(np.abs(share - overall) < 0.12), (name, share, overall)


def test_fractions_roughly_held_without_patient_ids() -> None:
    labels = np.repeat([0, 1, 2], [300, 100, 50])
    groups = np.array([f"img{i}" for i in range(len(labels))])
    split = assign_splits(labels, groups, CLASSES, 0.15, 0.15, seed=1)
    for name, expected in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        assert abs(np.mean(split == name) - expected) < 0.02
        counts = np.bincount(labels[split == name], minlength=3)
        assert np.allclose(counts / counts.sum(), [300 / 450, 100 / 450, 50 / 450], atol=0.02)


def test_deterministic_for_a_seed_and_seed_matters() -> None:
    labels, groups = cohort()
    first = assign_splits(labels, groups, CLASSES, 0.2, 0.2, seed=3)
    again = assign_splits(labels, groups, CLASSES, 0.2, 0.2, seed=3)
    other = assign_splits(labels, groups, CLASSES, 0.2, 0.2, seed=4)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_given_splits_are_kept() -> None:
    labels, groups = cohort(40)
    given = np.where(np.arange(len(labels)) % 3 == 0, "test", "train")
    given[1::7] = "val"
    split = assign_splits(labels, groups, CLASSES, 0.3, 0.3, seed=0, given=given)
    assert np.array_equal(split, given)


def test_missing_given_split_is_carved_from_train_only() -> None:
    labels, groups = cohort(90)
    test_rows = np.isin(groups, [f"pt{p}" for p in range(0, 90, 5)])
    given = np.where(test_rows, "test", "train")
    split = assign_splits(labels, groups, CLASSES, 0.2, 0.2, seed=0, given=given)
    assert np.array_equal(split == "test", test_rows)  # given test untouched, nothing added
    assert (split == "val").any() and not (test_rows & (split == "val")).any()
    train_rows = ~test_rows
    assert abs((split[train_rows] == "val").mean() - 0.2) < 0.1  # val_fraction of train
    assert patient_overlap(groups[train_rows], split[train_rows]) == 0


def test_zero_fraction_leaves_that_split_empty() -> None:
    labels, groups = cohort(30)
    split = assign_splits(labels, groups, CLASSES, 0.25, 0.0, seed=0)
    assert not (split == "test").any() and (split == "val").any()


def test_given_splits_without_train_rejected() -> None:
    with pytest.raises(DataError, match="no train rows"):
        assign_splits(np.array([0, 1]), np.array(["a", "b"]), ["a", "b"], 0.1, 0.1, 0,
                      given=np.array(["val", "test"]))
