"""Findings (ground glass, consolidation, reticular net) and distractors drawn on a chunk."""

from __future__ import annotations

import numpy as np

from pipeline.data.synthetic.constants import (
    _BACTERIAL,
    _COVID,
    _FINDING_GAIN,
    _LOBES,
    _MAX_ELECTRODES,
    _VIRAL,
)
from pipeline.data.synthetic.frame import _Frame
from pipeline.data.synthetic.shapes import _band, _cell_edges, _ramp, _ridges


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
