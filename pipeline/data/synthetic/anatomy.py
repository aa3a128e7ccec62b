"""A chunk rendered: anatomy, then findings and distractors, exposure, noise and blur."""

from __future__ import annotations

import math

import numpy as np

from pipeline.data.synthetic.constants import _NET_CELLS, _PIXELS_PER_PASS
from pipeline.data.synthetic.findings import _distractors, _findings
from pipeline.data.synthetic.frame import _Frame
from pipeline.data.synthetic.shapes import _band, _blur, _coarse, _ramp


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


