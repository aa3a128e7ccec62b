"""Each competing model on the test split, once, with what a reviewer asks for: its metrics at
an operating point chosen on validation, their 95% patient-bootstrap intervals, its calibration,
and its difference from the champion on the same test patients."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from omegaconf import DictConfig

from pipeline.evidence.bootstrap import Uncertain, bootstrap, patient_groups, resamples
from pipeline.evidence.calibration import brier, ece, fit_temperature, scaled
from pipeline.evidence.metrics import nll, scores
from pipeline.evidence.operating_point import choose_threshold, parse
from pipeline.selection.competition import Candidate
from pipeline.selection.evaluation import Evaluation
from pipeline.selection.statistics import (
    Paired,
    paired,
)

SMALL_CLASS = 20  # test images of a class below which intervals are wide


@dataclass
class Assessed:
    """One backbone's best run, tested."""

    candidate: Candidate
    evaluation: Evaluation
    threshold: float | None  # binary tasks: chosen on validation
    test: Uncertain  # test_<metric> values and intervals at the threshold
    ece: float
    brier: float
    versus_champion: Paired | None = None  # None for the champion itself
    calibration: dict[str, float] = field(default_factory=dict)  # champion: T, ECE before/after

    @property
    def backbone(self) -> str:
        return self.candidate.backbone


def assess(cfg: DictConfig, ranked: Sequence[Candidate],
           evaluations: dict[str, Evaluation]) -> list[Assessed]:
    """Every candidate assessed, the champion (first) included; paired against the champion."""
    spec = str(cfg.select.operating_point)
    parse(spec)  # a bad spec stops before any bootstrap
    champion = evaluations[ranked[0].backbone]
    samples = resamples(patient_groups(champion.patients), int(cfg.select.bootstrap),
                        int(cfg.seed))
    out = []
    for cand in ranked:
        ev = evaluations[cand.backbone]
        if ev.files != champion.files:
            raise ValueError(f"{cand.backbone} was tested on other images than the champion")
        pos = ev.positive_index
        threshold = None
        if ev.probs.shape[1] == 2 and ev.val_probs is not None:
            threshold = choose_threshold(ev.val_probs, ev.val_target,
                                         1 if pos is None else pos, spec)
        test = bootstrap(ev.probs, ev.target, samples,
                         lambda p, t, pos=pos, thr=threshold: scores(p, t, pos, thr))
        item = Assessed(cand, ev, threshold, test, ece(ev.probs, ev.target, pos),
                        brier(ev.probs, ev.target, pos))
        if out:
            item.versus_champion = paired(ev.probs, champion.probs, ev.target, pos, samples)
        out.append(item)
    if bool(cfg.select.get("calibrate", True)):
        out[0].calibration = temperature_scaling(out[0].evaluation)
    return out


def temperature_scaling(ev: Evaluation) -> dict[str, float]:
    """The champion's temperature, fitted on validation; NLL there and ECE on test, before and
    after."""
    if ev.val_probs is None:
        return {}
    t = fit_temperature(ev.val_probs, ev.val_target)
    after = scaled(ev.probs, t)
    pos = ev.positive_index
    return {"temperature": t, "val_nll_before": nll(ev.val_probs, ev.val_target),
            "val_nll_after": nll(scaled(ev.val_probs, t), ev.val_target),
            "ece_before": ece(ev.probs, ev.target, pos), "ece_after": ece(after, ev.target, pos)}


def small_classes(ev: Evaluation) -> dict[str, int]:
    """Classes with fewer than SMALL_CLASS test images."""
    counts = np.bincount(ev.target, minlength=len(ev.classes))
    return {c: int(n) for c, n in zip(ev.classes, counts, strict=True) if n < SMALL_CLASS}


def small_test_warning(ev: Evaluation) -> str | None:
    """What to say when the test split is small (None when it is not)."""
    small = small_classes(ev)
    if not small:
        return None
    listing = ", ".join(f"{c} {n}" for c, n in small.items())
    text = (f"the test split has fewer than {SMALL_CLASS} images of some class ({listing}): "
            "every interval is wide and backbones are hard to tell apart; cross-validate the "
            "search (sweep.cv_folds=5) and add data where you can")
    return text


def indistinct(assessed: Sequence[Assessed], level: float = 0.05) -> list[Assessed]:
    """Backbones that cannot be told apart from the champion at ``level``."""
    return [a for a in assessed[1:] if a.versus_champion is not None
            and np.isfinite(a.versus_champion.p_value) and a.versus_champion.p_value >= level]

