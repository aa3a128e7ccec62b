"""The embedded synthetic generator: deterministic, balanced, patient-grouped, findings in place."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pipeline.common.errors import ConfigError
from pipeline.data.synthetic import CLASS_NAMES, SyntheticData, generate


@pytest.fixture(scope="module")
def four_class() -> SyntheticData:
    """Enough images per class at 64 px for class-mean statistics to be stable."""
    return generate(480, 64, num_classes=4, seed=3)


def test_same_arguments_give_identical_data() -> None:
    a = generate(60, 32, seed=5)
    b = generate(60, 32, seed=5)
    assert a.images.tobytes() == b.images.tobytes()
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.patients, b.patients)


def test_another_seed_gives_other_images() -> None:
    a = generate(60, 32, seed=5)
    b = generate(60, 32, seed=6)
    assert np.abs(a.images.astype(int) - b.images.astype(int)).mean() > 10


def test_image_size_changes_pixels_only() -> None:
    """Parameters are drawn before rendering, so every size shows the same patients and labels."""
    small, large = generate(40, 32, seed=1), generate(40, 96, seed=1)
    assert np.array_equal(small.labels, large.labels)
    assert np.array_equal(small.patients, large.patients)
    shrunk = large.images.reshape(40, 32, 3, 32, 3).mean(axis=(2, 4))
    assert np.abs(shrunk - small.images).mean() < 12


@pytest.mark.parametrize("size", [32, 64, 101])
def test_shapes_dtypes_and_range(size: int) -> None:
    data = generate(40, size, num_classes=2, seed=0)
    assert data.images.shape == (40, size, size) and data.images.dtype == np.uint8
    assert data.labels.shape == (40,) and data.labels.dtype == np.int64
    assert data.patients.shape == (40,) and data.patients.dtype.kind == "U"
    assert isinstance(data.class_names, list)
    # Radiograph-like: dark air outside the body, bright bone and mediastinum, in every image.
    flat = data.images.reshape(40, -1)
    dark, bright = np.percentile(flat, 2, axis=1), np.percentile(flat, 98, axis=1)
    assert (dark < 80).all() and (bright > 160).all() and (bright - dark > 120).all()


@pytest.mark.parametrize(
    ("num_classes", "num_images", "per_patient"), [(2, 83, 3), (3, 600, 2), (4, 41, 1)]
)
def test_balanced_classes_grouped_by_patient(
    num_classes: int, num_images: int, per_patient: int
) -> None:
    data = generate(num_images, 32, num_classes=num_classes, seed=2, images_per_patient=per_patient)
    assert data.class_names == CLASS_NAMES[num_classes]
    counts = np.bincount(data.labels, minlength=num_classes)
    assert len(counts) == num_classes and counts.max() - counts.min() <= 1
    assert all(re.fullmatch(r"p\d{4,}", p) for p in data.patients)

    short = np.zeros(num_classes, dtype=int)
    ids, starts, sizes = np.unique(data.patients, return_index=True, return_counts=True)
    for patient, start, size in zip(ids, starts, sizes, strict=True):
        rows = np.flatnonzero(data.patients == patient)
        assert np.array_equal(rows, np.arange(start, start + size))  # follow-ups are adjacent
        assert len(set(data.labels[rows])) == 1  # the finding belongs to the patient
        assert size <= per_patient
        short[data.labels[start]] += size < per_patient
    assert (short <= 1).all()  # only a class's remainder makes a shorter patient
    assert sizes.sum() == num_images


def test_follow_ups_share_anatomy(four_class: SyntheticData) -> None:
    images, patients = four_class.images.astype(float), four_class.patients
    same = patients[:-1] == patients[1:]
    gaps = np.abs(images[:-1] - images[1:]).mean(axis=(1, 2))
    assert gaps[same].mean() < 0.75 * gaps[~same].mean()


def _zone(images: np.ndarray, rows: tuple[float, float], out: tuple[float, float]) -> np.ndarray:
    """Mean of a band of rows, both sides, ``out`` = distance from the midline (image fractions)."""
    size = images.shape[-1]
    r = slice(int(rows[0] * size), int(rows[1] * size))
    left = slice(int((0.5 - out[1]) * size), int((0.5 - out[0]) * size))
    right = slice(int((0.5 + out[0]) * size), int((0.5 + out[1]) * size))
    return (images[:, r, left].mean(axis=(1, 2)) + images[:, r, right].mean(axis=(1, 2))) / 2


def _class_means(data: SyntheticData, values: np.ndarray) -> dict[str, float]:
    return {name: float(values[data.labels == c].mean()) for c, name in enumerate(data.class_names)}


def test_covid_is_brighter_in_the_peripheral_lower_zones(four_class: SyntheticData) -> None:
    images = four_class.images.astype(float)
    lower_peripheral = _zone(images, (0.50, 0.64), (0.24, 0.36))
    upper = _zone(images, (0.25, 0.38), (0.14, 0.30))
    means = _class_means(four_class, lower_peripheral - upper)
    assert means["covid"] > means["normal"] + 15
    assert means["covid"] > means["viral_pneumonia"] + 15


def test_bacterial_consolidation_is_one_sided(four_class: SyntheticData) -> None:
    images = four_class.images.astype(float)
    size = images.shape[-1]
    rows, out = slice(int(0.25 * size), int(0.62 * size)), (int(0.1 * size), int(0.34 * size))
    left = images[:, rows, size // 2 - out[1] : size // 2 - out[0]].mean(axis=(1, 2))
    right = images[:, rows, size // 2 + out[0] : size // 2 + out[1]].mean(axis=(1, 2))
    means = _class_means(four_class, np.abs(left - right))
    assert means["bacterial_pneumonia"] > means["normal"] + 8
    assert means["bacterial_pneumonia"] > means["viral_pneumonia"] + 8


def test_viral_pattern_adds_fine_texture_around_the_hila(four_class: SyntheticData) -> None:
    images = four_class.images.astype(float)
    centre = images[:, 1:-1, 1:-1]
    around = images[:, :-2, 1:-1] + images[:, 2:, 1:-1] + images[:, 1:-1, :-2] + images[:, 1:-1, 2:]
    detail = np.abs(centre - around / 4)
    padded = np.pad(detail, ((0, 0), (1, 1), (1, 1)))
    means = _class_means(four_class, _zone(padded, (0.35, 0.55), (0.08, 0.2)))
    assert means["viral_pneumonia"] > means["normal"] + 2
    assert means["viral_pneumonia"] > means["covid"] + 2


def test_every_finding_makes_the_lungs_brighter_than_normal(four_class: SyntheticData) -> None:
    lungs = _zone(four_class.images.astype(float), (0.25, 0.62), (0.1, 0.34))
    means = _class_means(four_class, lungs)
    assert all(means[name] > means["normal"] for name in four_class.class_names[1:])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 5}, "dataset.num_classes=5 is not supported: use 2, 3 or 4"),
        ({"num_classes": 1}, "dataset.num_classes=1 is not supported: use 2, 3 or 4"),
        ({"image_size": 16}, "dataset.image_size=16 is not supported: use an integer from 32"),
        ({"image_size": 64.0}, "dataset.image_size=64.0 is not supported"),
        ({"num_images": 29}, "dataset.num_images=29 is too small: use at least 30"),
        ({"num_images": 39, "num_classes": 4}, "dataset.num_images=39 is too small: use at least"),
        ({"images_per_patient": 0}, "dataset.images_per_patient=0 is not supported: use 1 to 40"),
        ({"images_per_patient": 41}, "dataset.images_per_patient=41 is not supported: use 1 to 40"),
        ({"seed": -1}, "dataset.seed=-1 is not supported: use a non-negative integer"),
    ],
)
def test_bad_arguments_name_the_key_and_the_valid_values(kwargs: dict, message: str) -> None:
    args = {"num_images": 600, "image_size": 64, "num_classes": 3, **kwargs}
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        generate(**args)
    assert "\n" not in str(caught.value)
