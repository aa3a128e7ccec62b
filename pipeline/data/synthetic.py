"""Embedded synthetic chest radiographs, so the whole pipeline runs with nothing on disk.

Each image is rendered from a parametric PA chest model evaluated on a coordinate grid: soft tissue,
lung fields, heart, mediastinum and spine, posterior and anterior ribs, clavicles, hila, vessels and
diaphragm domes, then exposure, quantum noise and blur. Findings are drawn on top: peripheral
lower-zone ground glass (covid), lobar consolidation (bacterial pneumonia) or a perihilar reticular
pattern (viral pneumonia). Severity varies per image down to nearly invisible, and distractors
(breast shadows, electrodes, buttons, side markers, granulomas) appear in every class, so a small
CNN learns the task well above chance but not perfectly.

Everything is drawn from a seeded ``numpy.random.Generator``: the same arguments give byte-identical
images. Anatomy is in size-independent coordinates, so any ``image_size`` shows the same patients.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pipeline.config.errors import ConfigError

CLASS_NAMES: dict[int, list[str]] = {
    2: ["normal", "covid"],
    3: ["normal", "covid", "pneumonia"],
    4: ["normal", "covid", "bacterial_pneumonia", "viral_pneumonia"],
}

MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 1024
# Splits need a few images and patients of every class in train, validation and test.
MIN_IMAGES_PER_CLASS = 10
MIN_PATIENTS_PER_CLASS = 5

# Images whose random fields are drawn together; fixed so those draws do not depend on image_size.
_CHUNK = 32
# Pixels rendered in one vectorised pass: bounds memory at large sizes (about 200 MB at most).
_PIXELS_PER_PASS = _CHUNK * 256 * 256

# Finding drawn for a patient (the label maps onto these; pneumonia picks bacterial or viral).
_NORMAL, _COVID, _BACTERIAL, _VIRAL = 0, 1, 2, 3

# Lobes a bacterial consolidation fills: (side, region); side -1 = patient right = image left.
_LOBES = [(-1, "upper"), (-1, "middle"), (-1, "lower"), (1, "upper"), (1, "lower")]
_LOBE_WEIGHTS = np.array([0.15, 0.15, 0.3, 0.15, 0.25])

# Overall visibility of findings relative to the air they displace. Calibrated so that a small
# 4-layer CNN trained from scratch for 8 epochs on 600 images at 64 px (3 classes, 60/20/20 split by
# patient) reaches a validation macro AUROC of about 0.85, clearly above a logistic regression on
# raw pixels (about 0.75) and clearly below perfect.
_FINDING_GAIN = 4.0
_MAX_ELECTRODES = 4
# Cells across the image in the viral reticular net.
_NET_CELLS = 20


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


# --------------------------------------------------------------------------------------------------
# Rendering


def _ramp(distance: np.ndarray, width: float) -> np.ndarray:
    """Soft inside-indicator: 0 outside, 1 inside, linear across ``width`` around the border."""
    out = distance * np.float32(1.0 / width)
    out += np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


@lru_cache(maxsize=32)
def _interp_matrix(cells: int, size: int) -> np.ndarray:
    """Gaussian interpolation from a coarse grid of knots onto ``size`` pixel centres."""
    knots = (np.arange(cells + 2) - 0.5) / cells
    pixels = (np.arange(size) + 0.5) / size
    weights = np.exp(-0.5 * ((pixels[:, None] - knots[None, :]) * cells / 0.7) ** 2)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def _coarse(rng: np.random.Generator, batch: int, cells: int) -> np.ndarray:
    return rng.standard_normal((batch, cells + 2, cells + 2)).astype(np.float32)


def _smooth(coarse: np.ndarray, size: int) -> np.ndarray:
    """Smooth random field with unit spread per image; feature size is set by the coarse grid."""
    m = _interp_matrix(coarse.shape[-1] - 2, size)
    field = m @ coarse @ m.T
    return field / (field.std(axis=(1, 2), keepdims=True) + 1e-6)


def _ridges(field: np.ndarray, width: float) -> np.ndarray:
    """Thin lines along the zero crossings of a smooth field: reticulation, bronchograms."""
    return np.exp(-((field / width) ** 2))


def _cell_edges(points: np.ndarray, size: int, width: float) -> np.ndarray:
    """Polygonal net (borders of a jittered-grid Voronoi tiling): interstitial reticulation.

    ``points`` holds one random point per grid cell (batch, cells + 2, cells + 2, 2); each pixel
    only looks at the 3 x 3 cells around it, so the cost does not grow with the number of cells.
    """
    cells = points.shape[1] - 2
    pos = (np.arange(size, dtype=np.float32) + 0.5) * np.float32(cells / size)
    index = np.minimum(pos.astype(np.int64), cells - 1)
    nearest = np.full((points.shape[0], size, size), np.inf, dtype=np.float32)
    second = nearest.copy()
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            rows, cols = index + di, index + dj
            seed = points[:, rows[:, None] + 1, cols[None, :] + 1]
            dist = (pos - rows.astype(np.float32))[:, None] - seed[..., 0]
            dist *= dist
            dist += ((pos - cols.astype(np.float32))[None, :] - seed[..., 1]) ** 2
            second = np.minimum(second, np.maximum(nearest, dist))
            nearest = np.minimum(nearest, dist)
    # Lines thinner than a pixel would alias into sparkles: widen them to about a pixel and dim
    # them, by less than the widening so the net stays about as visible at small sizes.
    drawn = max(width, 0.7 * cells / size)
    return math.sqrt(width / drawn) * np.exp(-(((np.sqrt(second) - np.sqrt(nearest)) / drawn) ** 2))


def _blur(images: np.ndarray, sigma_px: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur with a per-image sigma (detector unsharpness)."""
    radius = max(1, int(np.ceil(3 * float(sigma_px.max()))))
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (offsets[None, :] / np.maximum(sigma_px[:, None], 1e-3)) ** 2)
    kernel = (kernel / kernel.sum(axis=1, keepdims=True))[:, :, None, None]
    size = images.shape[-1]
    for axis in (1, 2):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(images, pad, mode="edge")
        out = np.zeros_like(images)
        for i in range(2 * radius + 1):
            window = padded[:, i : i + size, :] if axis == 1 else padded[:, :, i : i + size]
            out += kernel[:, i] * window
        images = out
    return images


class _Frame:
    """One chunk's parameters, random fields and coordinate grids in the body frame.

    Body coordinates: x across (patient's left on the image right), y down, the thorax spanning
    about -0.5 to 0.5. Masks found while drawing the anatomy (body, lung, air) are kept here too.
    """

    def __init__(self, p: dict[str, np.ndarray], fields: dict[str, np.ndarray], size: int) -> None:
        self.p, self.fields, self.size = p, fields, size
        grid = (np.arange(size, dtype=np.float32) + 0.5) / size
        self.u = grid[None, None, :]
        self.v = grid[None, :, None]
        dx, dy = self.u - self.col("cx"), self.v - self.col("cy")
        cos, sin = np.cos(self.col("rot")), np.sin(self.col("rot"))
        self.x = (dx * cos + dy * sin) / (self.col("scale") * self.col("aspect"))
        self.y = (-dx * sin + dy * cos) / self.col("scale")
        self.ax = np.abs(self.x)
        self.left = self.x > 0  # patient's left, image right
        # Medial lung border: the heart pushes the left lung a little further out.
        self.medial = np.where(self.left, np.float32(0.06), np.float32(0.05))
        self.edge = max(0.01, 1.5 / size)
        self.body = self.lung = self.air = np.zeros_like(self.x)

    def col(self, key: str) -> np.ndarray:
        """A per-image parameter shaped to broadcast over the pixel grid."""
        return self.p[key][:, None, None]

    def smooth(self, name: str) -> np.ndarray:
        return _smooth(self.fields[name], self.size)

    def take(self, index: np.ndarray) -> _Frame:
        """The frame for some of the images, so rare features cost only the images showing them."""
        sub = copy.copy(self)
        sub.p = {key: value[index] for key, value in self.p.items()}
        sub.fields = {key: value[index] for key, value in self.fields.items()}
        for name in ("x", "y", "ax", "left", "medial", "body", "lung", "air"):
            setattr(sub, name, getattr(self, name)[index])
        return sub


def _render(p: dict[str, np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one chunk of images to uint8, in passes small enough for large image sizes."""
    batch = len(p["cx"])
    # All random fields are drawn for every image in a fixed order, so draws never depend on size.
    fields = {
        name: _coarse(rng, batch, cells)
        for name, cells in [
            ("vessel", 4),
            ("ggo", 9),
            ("lobe_edge", 5),
            ("lobe_tex", 8),
            ("bronch", 9),
            ("ret_break", 14),
            ("texture", 10),
        ]
    }
    fields["ret_cells"] = rng.random((batch, _NET_CELLS + 2, _NET_CELLS + 2, 2), dtype=np.float32)
    images = np.empty((batch, size, size), dtype=np.uint8)
    step = max(1, _PIXELS_PER_PASS // (size * size))
    for start in range(0, batch, step):
        part = slice(start, min(start + step, batch))
        frame = _Frame(
            {key: value[part] for key, value in p.items()},
            {key: value[part] for key, value in fields.items()},
            size,
        )
        images[part] = _render_pass(frame, rng)
    return images


def _render_pass(f: _Frame, rng: np.random.Generator) -> np.ndarray:
    """Density of anatomy, finding and distractors, then exposure, noise and blur."""
    col, size = f.col, f.size

    density = _anatomy(f)
    density += _findings(f)
    density += _distractors(f)

    # Exposure: transmission to a display value with per-image window, gamma and heel effect.
    mu = col("mu")
    value = (1.0 - np.exp(-mu * density)) / (1.0 - np.exp(-mu * 1.35))
    value = np.clip(value, 0.0, 1.0) ** col("gamma")
    value = col("lo") + (col("hi") - col("lo")) * value
    value *= 1.0 + col("heel") * (f.u - 0.5)
    value += col("noise") * rng.standard_normal(value.shape, dtype=np.float32)
    value = _blur(value.astype(np.float32), f.p["blur"] * size)
    return np.clip(value * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _anatomy(f: _Frame) -> np.ndarray:
    """Attenuation of the normal chest; leaves the body, lung and air masks on the frame."""
    col, x, y, ax, e = f.col, f.x, f.y, f.ax, f.edge

    # Soft tissue: rounded shoulders, neck, barrel-shaped chest wall narrowing to the waist.
    shoulder = -0.53 + 0.25 * np.maximum(ax - 0.1, 0.0) ** 2 + 3.0 * np.maximum(ax - 0.42, 0.0) ** 2
    wall = 0.44 - 0.04 * (y / 0.5) ** 2 - 0.1 * np.maximum(y - 0.3, 0.0)
    wall = wall + 0.6 * np.maximum(-0.27 - y, 0.0)
    top = np.maximum(_ramp(y - shoulder, 0.03), _ramp(0.1 - ax, 0.02))
    body = _ramp(wall - ax, e) * top
    thickness = np.sqrt(np.clip(1.0 - (ax / (wall + 0.06)) ** 2, 0.05, 1.0))
    upper_arm = _ramp(ax - wall - 0.035, e) * _ramp(0.62 - ax, 0.05)
    arms = col("arms") * upper_arm * _ramp(y - shoulder - 0.03, 0.04)
    density = col("tissue") * (0.8 * body * thickness + 0.35 * arms)
    f.body = body

    # Heart: tilted ellipse on the image right, resting on the diaphragm, soft-edged.
    hs = col("heart_s")
    hx, hy = x - (0.05 + col("heart_dx")), y - 0.15
    tilt_c, tilt_s = math.cos(0.4), math.sin(0.4)
    hu, hv = hx * tilt_c + hy * tilt_s, -hx * tilt_s + hy * tilt_c
    hq = np.sqrt((hu / (0.19 * hs)) ** 2 + (hv / (0.115 * hs)) ** 2)
    heart = _ramp((1.0 - hq) * 0.12, 0.02)
    knob = _ramp(0.035 - np.hypot(x - 0.07, y + 0.15), 0.02)

    # Lungs: rounded apices, curved lateral walls, domes at the base (left dome a little lower).
    medial = f.medial + 0.03 * _ramp(-0.2 - y, 0.1)
    lateral = 0.41 - 0.03 * (y / 0.5) ** 2
    centre, half = (medial + lateral) / 2, (lateral - medial) / 2
    apex, mid = -0.37, -0.12
    lq = np.sqrt(((ax - centre) / half) ** 2 + (np.minimum(y - mid, 0.0) / (mid - apex)) ** 2)
    inside = _ramp((1.0 - lq) * half, e)
    dome = col("diaph") + np.where(f.left, col("diaph_lr"), 0.0)
    diaphragm = dome + 0.11 * ((ax - 0.2) / 0.2) ** 2
    lung = inside * _ramp(diaphragm - y, e) * (1.0 - heart) * (1.0 - knob)
    depth = 0.7 + 0.3 * np.sqrt(np.clip(1.0 - ((ax - centre) / half) ** 2, 0.0, 1.0))
    air = col("air") * col("tissue") * lung * depth
    density -= air
    f.lung, f.air = lung, air

    # Mediastinum, spine (vertebrae), trachea, heart, hila.
    density += 0.06 * np.exp(-((x / 0.07) ** 2)) * top
    vertebrae = 0.7 + 0.3 * np.cos(2 * np.pi * y / (0.9 * col("rib_sp")))
    density += 0.07 * _ramp(0.035 - ax, e) * vertebrae * top
    density -= 0.15 * _ramp(0.016 - np.abs(x), e) * _ramp(-0.08 - y, 0.03) * top
    density += 0.04 * heart
    hilum = np.exp(-(((ax - 0.1) / 0.035) ** 2) - ((y + 0.04) / 0.06) ** 2)
    density += 0.1 * hilum * top
    # Gastric bubble under the left dome.
    bubble = _ramp(0.04 - np.hypot((x - 0.22) / 1.4, y - col("diaph") - 0.1), 0.02)
    density -= 0.2 * col("bubble") * bubble * f.left

    # Vessels: irregular spokes that fan out from each hilum and fade to the periphery.
    radius = np.hypot(ax - 0.08, y + 0.04)
    angle = np.arctan2(y + 0.04, ax - 0.08)
    phase = np.where(f.left, col("vessel_phase_l"), col("vessel_phase_r"))
    warp = 1.5 * f.smooth("vessel")
    spokes = np.maximum(np.cos(9.0 * angle + phase + warp), 0.0) ** 6
    density += col("vessel_amp") * spokes * np.exp(-radius / 0.16) * lung
    # Mottled parenchyma and overlapping soft tissue, in every class.
    density += 0.025 * f.smooth("texture") * lung

    density += _ribs(f, diaphragm)
    return density


def _band(offset: np.ndarray, half_width: float) -> np.ndarray:
    """Bone-like cross-section: flat top with fairly sharp cortical edges."""
    return np.sqrt(np.clip(1.0 - (offset / half_width) ** 2, 0.0, 1.0))


def _ribs(f: _Frame, diaphragm: np.ndarray) -> np.ndarray:
    """Posterior and anterior ribs as repeating curved bands, plus clavicles."""
    col, y, ax, e = f.col, f.y, f.ax, f.edge
    spacing, start = col("rib_sp"), col("rib_y0")
    chest = _ramp(0.43 - ax, e) * _ramp(diaphragm + 0.06 - y, 0.06)

    # Posterior ribs: near-horizontal at the spine, arching down laterally; wider apart lower down.
    curve = -0.06 * ax + 1.5 * np.maximum(ax - 0.1, 0.0) ** 2
    depth = y - start - curve
    phase = depth / spacing - 0.6 * (depth / 0.8) ** 2
    frac = phase - np.floor(phase)
    count = _ramp(phase, 0.3) * _ramp(9.5 - phase, 0.3)
    posterior = _band(frac - 0.5, 0.22) * count * chest * _ramp(ax - 0.04, e)

    # Anterior ribs: fainter, running down and inwards from the lateral wall.
    curve = 0.45 * (0.44 - ax) - 0.4 * (0.44 - ax) ** 2
    phase = (y - start - 0.03 - curve) / (1.2 * spacing)
    frac = phase - np.floor(phase)
    count = _ramp(phase, 0.3) * _ramp(6.0 - phase, 0.3)
    anterior = _band(frac - 0.5, 0.25) * count * chest * _ramp(ax - 0.16, 0.06)

    # Clavicles: from the sternal end out and up to the shoulder.
    track = col("clav_y") - 0.2 * (ax - 0.04) + 0.3 * (ax - 0.2) ** 2
    clavicle = _band(y - track, 0.017) * _ramp(ax - 0.04, e) * _ramp(0.4 - ax, 0.02)

    return col("rib_amp") * (posterior + 0.5 * anterior) + 0.12 * clavicle


def _findings(f: _Frame) -> np.ndarray:
    """Extra attenuation of each image's finding; never more than the air it replaces."""
    extra = np.zeros_like(f.y)
    for kind, draw in ((_COVID, _ground_glass), (_BACTERIAL, _consolidation), (_VIRAL, _reticular)):
        index = np.flatnonzero(f.p["kind"] == kind)
        if index.size:
            sub = f.take(index)
            extra[index] += _FINDING_GAIN * sub.col("sev") * draw(sub)

    # Faint benign marking in a few normal patients: a thin plate of atelectasis or scar.
    index = np.flatnonzero(f.p["benign"] > 0)
    if index.size:
        sub = f.take(index)
        across = _across(sub)
        plate = _band(sub.y - 0.05 - 0.05 * across, 0.012) * _ramp(across - 0.2, 0.1)
        extra[index] += 0.25 * sub.col("benign") * plate * sub.lung * (sub.x < 0)

    # Saturate softly: a lobe can fill with fluid but never attenuate more than soft tissue.
    cap = 0.95 * f.air + 1e-6
    return cap * (1.0 - np.exp(-extra / cap))


def _across(f: _Frame) -> np.ndarray:
    """Position across each lung: 0 at the medial border, 1 at the lateral wall."""
    return np.clip((f.ax - f.medial) / (0.405 - f.medial), 0.0, 1.0)


def _ground_glass(f: _Frame) -> np.ndarray:
    """Covid: hazy, patchy ground glass in the peripheral lower zones, usually both sides."""
    patches = np.maximum(f.smooth("ggo") + 0.5, 0.0)
    zone = _ramp(_across(f) - 0.5, 0.35) * _ramp(f.y + 0.02, 0.14)
    side = np.where(f.x * f.col("ggo_weak_side") > 0, f.col("ggo_weak"), np.float32(1.0))
    return 0.33 * patches * zone * side * f.lung


def _consolidation(f: _Frame) -> np.ndarray:
    """Bacterial: dense opacity filling a lobe, sharp at a fissure, with air bronchograms."""
    y, across = f.y, _across(f)
    wobble = 0.03 * f.smooth("lobe_edge")
    lobar = np.zeros_like(y)
    for index, (side, region) in enumerate(_LOBES):
        chosen = (f.col("lobe") == index) + 0.7 * (f.col("lobe2") == index)
        if not chosen.any():
            continue
        if region == "upper":
            fill = _ramp(-0.07 + 0.05 * across + wobble - y, 0.012 if side < 0 else 0.04)
        elif region == "middle":
            fill = _ramp(y + 0.07 - wobble, 0.012) * _ramp(0.13 - y, 0.06)
            fill = fill * _ramp(0.75 - across, 0.4)
        else:
            fill = _ramp(y - 0.02 + 0.08 * across - wobble, 0.05)
        lobar += chosen * (f.x * side > 0) * fill
    texture = 0.75 + 0.25 * np.tanh(f.smooth("lobe_tex"))
    bronchi = 1.0 - 0.25 * _ridges(f.smooth("bronch"), 0.08)
    return 0.85 * np.minimum(lobar, 1.0) * texture * bronchi * f.lung


def _reticular(f: _Frame) -> np.ndarray:
    """Viral: fine reticular net, bilateral and perihilar, with a little haze."""
    net = _cell_edges(f.fields["ret_cells"], f.size, 0.1)
    net *= np.clip(f.smooth("ret_break") + 0.5, 0.0, 1.0)
    perihilar = np.exp(-(((f.ax - 0.12) / 0.2) ** 2) - (f.y / 0.24) ** 2)
    return (0.35 * net + 0.03) * (0.25 + 0.75 * perihilar) * f.lung


def _distractors(f: _Frame) -> np.ndarray:
    """Class-independent features a model must learn to ignore."""
    extra = np.zeros_like(f.y)
    for key, draw in (
        ("breast", _breast_shadows),
        ("electrodes", _electrodes),
        ("artefact", _artefact),
        ("granuloma", _granuloma),
        ("marker", _side_marker),
    ):
        index = np.flatnonzero(f.p[key] > 0)
        if index.size:
            extra[index] += draw(f.take(index))
    return extra


def _breast_shadows(f: _Frame) -> np.ndarray:
    """Soft-edged density over both lower zones with a sharper lower margin."""
    centre = f.col("breast_y")
    shape = np.hypot((f.ax - 0.3) / 0.2, (f.y - centre) / 0.17)
    lower = _ramp(centre + 0.14 - f.y, 0.02)
    return f.col("breast") * _ramp(1.0 - shape, 0.6) * lower * f.body


def _disc(f: _Frame, key_x: str, key_y: str, radius: float | np.ndarray) -> np.ndarray:
    return _ramp(radius - np.hypot(f.x - f.col(key_x), f.y - f.col(key_y)), f.edge)


def _electrodes(f: _Frame) -> np.ndarray:
    """ECG electrodes: small bright discs with a brighter centre."""
    extra = np.zeros_like(f.y)
    for k in range(_MAX_ELECTRODES):
        present = f.col("electrodes") > k
        outer = _disc(f, f"el_x{k}", f"el_y{k}", 0.014)
        inner = _disc(f, f"el_x{k}", f"el_y{k}", 0.007)
        extra += 0.35 * present * (outer + 0.5 * inner)
    return extra


def _artefact(f: _Frame) -> np.ndarray:
    """A button, clip or piece of jewellery anywhere."""
    return 0.8 * f.col("artefact") * _disc(f, "art_x", "art_y", f.col("art_r"))


def _granuloma(f: _Frame) -> np.ndarray:
    """Calcified granuloma: a tiny bright nodule."""
    return 0.5 * _disc(f, "gran_x", "gran_y", 0.008)


def _side_marker(f: _Frame) -> np.ndarray:
    """An "L" in an upper corner of the film (image frame, not body frame)."""
    e = f.edge
    across, down = f.u - f.col("marker_x"), f.v - 0.07
    stem = _ramp(0.005 - np.abs(across), e) * _ramp(0.025 - np.abs(down), e)
    foot = _ramp(0.012 - np.abs(across - 0.007), e) * _ramp(0.005 - np.abs(down - 0.02), e)
    return 1.5 * np.maximum(stem, foot) + np.zeros_like(f.y)
