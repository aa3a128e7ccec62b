"""Train/val/test splits: stratified by label, grouped by patient (no patient in two splits),
deterministic for a seed; splits a layout gives (Kermany folders, a manifest column, MedMNIST)
are kept as given and only the missing ones are carved out of train."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from pipeline.common.errors import DataError

SPLIT_NAMES = ("train", "val", "test")


class ImageSplitWarning(UserWarning):
    """No patient ids: the split is by image, so a patient's images may straddle splits."""


def split_unit(patient_known: np.ndarray) -> str:
    """``patient`` when some images carry a patient id (the rest are their own patients),
    ``image`` when none does."""
    return "patient" if bool(np.any(patient_known)) else "image"


def warn_image_split(dataset: str) -> None:
    warnings.warn(
        f"dataset={dataset} gives no patient ids, so the split is by image: images of one "
        "patient (follow-ups, both views) may straddle train/val/test and inflate every test "
        "score; give ids with dataset.patient_pattern=<regex on the file name> (imagefolder, "
        "covid19_radiography) or dataset.patient_column (manifest)",
        ImageSplitWarning,
        stacklevel=3,
    )


def assign_splits(
    labels: np.ndarray,
    groups: np.ndarray,
    classes: list[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    given: np.ndarray | None = None,
) -> np.ndarray:
    """A split name per row.

    ``groups`` is the patient id per row (the row's own id when unknown). With ``given`` (a split
    per row), given splits stay; a split absent from it (Kermany's archives without val/, say) is
    carved out of the given train rows by its fraction. The fractions are in [0, 1) and leave
    train rows (the schema's dataset.val_fraction and test_fraction).
    """
    n = len(labels)
    split = np.array(given, dtype=object) if given is not None else np.full(n, "train", object)
    present = set(split.tolist()) if given is not None else set()
    if given is not None and "train" not in present:
        raise DataError(
            f"the dataset's given splits have no train rows (found {sorted(present)}): "
            f"give some rows the split 'train'"
        )
    carve_test = "test" not in present and test_fraction > 0
    carve_val = "val" not in present and val_fraction > 0
    if not (carve_test or carve_val):
        return split.astype(str)

    pool = np.flatnonzero(split == "train")
    _check_enough(labels[pool], groups[pool], classes, 1 + carve_test + carve_val)
    rng_seed = int(seed) % (2**32)
    if carve_test:
        held = _carve(labels[pool], groups[pool], test_fraction, rng_seed)
        split[pool[held]] = "test"
        pool = pool[~held]
    if carve_val:
        fraction = val_fraction / (1.0 - test_fraction) if carve_test else val_fraction
        held = _carve(labels[pool], groups[pool], fraction, rng_seed)
        split[pool[held]] = "val"
    _check_every_class(labels, split, classes, val_fraction, test_fraction, carve_val, carve_test)
    return split.astype(str)


def _check_enough(labels: np.ndarray, groups: np.ndarray, classes: list[str], needed: int) -> None:
    """Each class needs a patient (or image) for every split it is carved into."""
    grouped = len(np.unique(groups)) < len(groups)
    unit = "patients" if grouped else "images"
    for label, name in enumerate(classes):
        mask = labels == label
        count = len(np.unique(groups[mask]))
        if count < needed:
            raise DataError(
                f"class '{name}' has {int(mask.sum())} images of {count} {unit}, too few for the "
                f"requested split into {needed} parts (at least {needed} {unit} per class): "
                f"add images of '{name}', "
                f"leave the class out, or set dataset.val_fraction=0 / dataset.test_fraction=0"
            )


def _carve(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of about ``fraction`` of the rows, stratified, whole patients only."""
    n = len(labels)
    if len(np.unique(groups)) == n:  # no patient shares an image: an exact stratified split
        rows = np.arange(n)
        try:
            _, held = train_test_split(rows, test_size=fraction, stratify=labels, random_state=seed)
        except ValueError:  # too few of some class for exact stratification: let the folds do it
            held = None
        if held is not None:
            mask = np.zeros(n, bool)
            mask[held] = True
            return mask
    # Whole patients: StratifiedGroupKFold makes k folds of ~1/k each; take the fold that holds
    # every class and whose size is nearest the target.
    # Never more folds than groups, nor than the largest class has rows (sklearn refuses both).
    k = min(max(2, round(1.0 / fraction)), len(np.unique(groups)), int(np.bincount(labels).max()))
    k = max(k, 2)
    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    present = set(np.unique(labels).tolist())
    best, best_key = None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class": checked below
        for _, held in folds.split(np.zeros(n), labels, groups):
            missing = len(present - set(np.unique(labels[held]).tolist()))
            key = (missing, abs(len(held) - fraction * n))
            if best_key is None or key < best_key:
                best, best_key = held, key
    mask = np.zeros(n, bool)
    mask[best] = True
    return mask


def _check_every_class(
    labels: np.ndarray,
    split: np.ndarray,
    classes: list[str],
    val_fraction: float,
    test_fraction: float,
    carve_val: bool,
    carve_test: bool,
) -> None:
    carved = {"val": (carve_val, val_fraction), "test": (carve_test, test_fraction)}
    for name, (was_carved, fraction) in carved.items():
        if not was_carved:
            continue
        for label, cls in enumerate(classes):
            in_split = int(np.sum((split == name) & (labels == label)))
            if in_split == 0:
                total = int(np.sum(labels == label))
                raise DataError(
                    f"class '{cls}' ({total} images) got no images in the {name} split: raise "
                    f"dataset.{name}_fraction (now {fraction:g}), try another dataset.seed, or "
                    f"add images of '{cls}'"
                )


def patient_overlap(patients: np.ndarray, split: np.ndarray) -> int:
    """How many patients have images in more than one split (0 for a grouped split)."""
    seen: dict[str, set[str]] = {}
    for patient, name in zip(patients.tolist(), split.tolist(), strict=True):
        seen.setdefault(patient, set()).add(name)
    return sum(len(names) > 1 for names in seen.values())
