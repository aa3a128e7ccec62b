"""``generate``: its checks, the patients and labels, and every image's drawn parameters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.common.errors import ConfigError
from pipeline.data.synthetic.anatomy import _render
from pipeline.data.synthetic.constants import (
    _BACTERIAL,
    _CHUNK,
    _LOBE_WEIGHTS,
    _LOBES,
    _MAX_ELECTRODES,
    _NORMAL,
    _VIRAL,
    CLASS_NAMES,
    MAX_IMAGE_SIZE,
    MIN_IMAGE_SIZE,
    MIN_IMAGES_PER_CLASS,
    MIN_PATIENTS_PER_CLASS,
)


@dataclass(frozen=True)
class SyntheticData:
    """Rendered images with labels and patient ids, ready to split by patient."""

    images: np.ndarray  # (N, S, S) uint8 grayscale radiographs
    labels: np.ndarray  # (N,) int64 indexes into class_names
    patients: np.ndarray  # (N,) str patient ids like "p0007"
    class_names: list[str]


def generate(
    num_images: int,
    image_size: int,
    num_classes: int = 3,
    seed: int = 42,
    images_per_patient: int = 2,
) -> SyntheticData:
    """Render a balanced, patient-grouped synthetic chest X-ray dataset.

    Classes get as near equal image counts as ``num_images`` allows; each patient has
    ``images_per_patient`` follow-ups of one class (one patient per class may have fewer when the
    class count does not divide evenly). Images of a patient are adjacent.
    """
    _check(num_images, image_size, num_classes, seed, images_per_patient)
    rng = np.random.default_rng(seed)
    labels, pidx, num_patients = _layout(num_images, num_classes, images_per_patient, rng)
    finding = _findings_for(labels, pidx, num_patients, num_classes, rng)
    params = _draw_params(rng, finding, pidx, num_patients)

    images = np.empty((num_images, image_size, image_size), dtype=np.uint8)
    for chunk, start in enumerate(range(0, num_images, _CHUNK)):
        sl = slice(start, min(start + _CHUNK, num_images))
        chunk_params = {key: value[sl] for key, value in params.items()}
        chunk_rng = np.random.default_rng([seed, 1, chunk])
        images[sl] = _render(chunk_params, image_size, chunk_rng)

    width = max(4, len(str(num_patients - 1)))
    patients = np.array([f"p{i:0{width}d}" for i in pidx])
    return SyntheticData(
        images=images,
        labels=labels.astype(np.int64),
        patients=patients,
        class_names=list(CLASS_NAMES[num_classes]),
    )


# --------------------------------------------------------------------------------------------------
# Arguments, labels and per-image parameters


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check(
    num_images: int, image_size: int, num_classes: int, seed: int, images_per_patient: int
) -> None:
    """Reject arguments the generator or a patient-grouped split cannot honour, in one line."""
    if not _is_int(num_classes) or num_classes not in CLASS_NAMES:
        raise ConfigError(f"dataset.num_classes={num_classes!r} is not supported: use 2, 3 or 4")
    if not _is_int(image_size) or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise ConfigError(
            f"dataset.image_size={image_size!r} is not supported: "
            f"use an integer from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}"
        )
    least = MIN_IMAGES_PER_CLASS * num_classes
    if not _is_int(num_images) or num_images < least:
        raise ConfigError(
            f"dataset.num_images={num_images!r} is too small: use at least {least} "
            f"({MIN_IMAGES_PER_CLASS} per class for {num_classes} classes, so every split has some)"
        )
    most = num_images // num_classes // MIN_PATIENTS_PER_CLASS
    if not _is_int(images_per_patient) or not 1 <= images_per_patient <= most:
        raise ConfigError(
            f"dataset.images_per_patient={images_per_patient!r} is not supported: use 1 to {most} "
            f"for {num_images} images and {num_classes} classes "
            f"(at least {MIN_PATIENTS_PER_CLASS} patients per class)"
        )
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"dataset.seed={seed!r} is not supported: use a non-negative integer")


def _layout(
    num_images: int, num_classes: int, per_patient: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, int]:
    """Balanced labels per image and a patient index per image, patients in random class order."""
    groups: list[tuple[int, int]] = []  # (label, images) per patient
    for label in range(num_classes):
        count = num_images // num_classes + (label < num_images % num_classes)
        full, rest = divmod(count, per_patient)
        groups += [(label, per_patient)] * full + ([(label, rest)] if rest else [])
    order = rng.permutation(len(groups))
    counts = np.array([groups[i][1] for i in order])
    labels = np.repeat([groups[i][0] for i in order], counts)
    pidx = np.repeat(np.arange(len(groups)), counts)
    return labels, pidx, len(groups)


def _findings_for(
    labels: np.ndarray,
    pidx: np.ndarray,
    num_patients: int,
    num_classes: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The finding each patient shows; with three classes pneumonia is bacterial or viral."""
    patient_label = np.zeros(num_patients, dtype=np.int64)
    patient_label[pidx] = labels
    if num_classes == 4:
        return patient_label
    finding = patient_label.copy()
    if num_classes == 3:
        viral = rng.random(num_patients) < 0.5
        finding[patient_label == 2] = np.where(viral, _VIRAL, _BACTERIAL)[patient_label == 2]
    return finding


def _draw_params(
    rng: np.random.Generator, finding: np.ndarray, pidx: np.ndarray, num_patients: int
) -> dict[str, np.ndarray]:
    """Per-image scalars: patient anatomy shared by follow-ups plus small per-image jitter."""
    n = len(pidx)

    def patient(low: float, high: float) -> np.ndarray:
        return rng.uniform(low, high, num_patients)[pidx]

    def jitter(scale: float) -> np.ndarray:
        return rng.normal(0.0, scale, n)

    def chance(p: float) -> np.ndarray:
        return (rng.random(num_patients) < p)[pidx].astype(np.float64)

    p: dict[str, np.ndarray] = {}
    # Positioning and body habitus.
    p["cx"] = 0.5 + patient(-0.035, 0.035) + jitter(0.01)
    p["cy"] = 0.52 + patient(-0.035, 0.035) + jitter(0.01)
    p["scale"] = patient(0.83, 1.0) * (1 + jitter(0.02))
    p["aspect"] = patient(0.92, 1.08)
    p["rot"] = np.deg2rad(patient(-5.0, 5.0) + jitter(1.5))
    p["tissue"] = patient(0.85, 1.2)
    p["arms"] = chance(0.5) * patient(0.3, 1.0)
    # Skeleton.
    p["rib_sp"] = patient(0.056, 0.07)
    p["rib_y0"] = patient(-0.42, -0.37) + jitter(0.004)
    p["rib_amp"] = patient(0.05, 0.09)
    p["clav_y"] = patient(-0.36, -0.30) + jitter(0.005)
    # Heart, lungs and diaphragm (inspiration varies per image).
    p["heart_s"] = patient(0.85, 1.15) * (1 + jitter(0.02))
    p["heart_dx"] = patient(-0.02, 0.03)
    p["diaph"] = patient(0.13, 0.22) + jitter(0.015)
    p["diaph_lr"] = patient(0.0, 0.05)
    p["air"] = patient(0.45, 0.62)
    p["vessel_amp"] = patient(0.05, 0.11)
    p["vessel_phase_r"] = rng.uniform(0, 2 * np.pi, n)
    p["vessel_phase_l"] = rng.uniform(0, 2 * np.pi, n)
    p["bubble"] = chance(0.5) * patient(0.5, 1.0)
    # Exposure and detector.
    p["mu"] = patient(1.4, 2.2) * (1 + jitter(0.06))
    p["gamma"] = patient(0.8, 1.25) * (1 + jitter(0.04))
    p["lo"] = rng.uniform(0.0, 0.08, n)
    p["hi"] = rng.uniform(0.85, 1.0, n)
    p["heel"] = rng.uniform(-0.08, 0.08, n)
    p["noise"] = rng.uniform(0.012, 0.035, n)
    p["blur"] = rng.uniform(0.003, 0.007, n)
    # Distractors present in every class.
    p["breast"] = chance(0.3) * patient(0.05, 0.18)
    p["breast_y"] = patient(0.12, 0.22)
    p["electrodes"] = chance(0.3) * rng.integers(1, _MAX_ELECTRODES + 1, n)
    for k in range(_MAX_ELECTRODES):
        p[f"el_x{k}"] = rng.uniform(-0.4, 0.4, n)
        p[f"el_y{k}"] = rng.uniform(-0.35, 0.3, n)
    p["artefact"] = (rng.random(n) < 0.2) * rng.uniform(0.3, 1.0, n)
    p["art_x"] = rng.uniform(-0.45, 0.45, n)
    p["art_y"] = rng.uniform(-0.4, 0.4, n)
    p["art_r"] = rng.uniform(0.008, 0.02, n)
    p["marker"] = (rng.random(n) < 0.5).astype(np.float64)
    p["marker_x"] = rng.choice([0.08, 0.9], n) + rng.uniform(-0.02, 0.02, n)
    p["granuloma"] = chance(0.06)
    p["gran_x"] = patient(-0.35, 0.35)
    p["gran_y"] = patient(-0.25, 0.1)
    # Findings: the kind is per patient, the severity per image (often barely visible).
    kind = finding[pidx].astype(np.float64)
    base = rng.beta(1.4, 1.5, num_patients)[pidx]
    severity = np.clip(base * np.exp(jitter(0.35)), 0.02, 1.0)
    p["kind"] = kind
    p["sev"] = np.where(kind == _NORMAL, 0.0, severity)
    p["benign"] = chance(0.03) * (kind == _NORMAL) * rng.uniform(0.3, 0.7, n)
    p["ggo_weak_side"] = np.where(rng.random(num_patients) < 0.2, -1.0, 1.0)[pidx]
    p["ggo_weak"] = patient(0.2, 0.6)
    p["lobe"] = rng.choice(len(_LOBES), num_patients, p=_LOBE_WEIGHTS)[pidx].astype(np.float64)
    second = rng.choice(len(_LOBES), num_patients)[pidx].astype(np.float64)
    p["lobe2"] = np.where((chance(0.12) > 0) & (second != p["lobe"]), second, -1.0)
    return {key: value.astype(np.float32) for key, value in p.items()}


