"""Each competing model on the test split, once, as it would be served, with what a reviewer asks
for: its calibration and operating point (both fitted on its own validation predictions), its
metrics there with 95% patient-bootstrap intervals (per class too), a flag when the operating
point is degenerate, its difference from the champion on the same test patients, and Holm's
adjustment over those comparisons."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from omegaconf import DictConfig

from pipeline.evidence.bootstrap import Resamples, Uncertain, bootstrap, bootstrap_classes, resample
from pipeline.evidence.calibration import Calibration, brier, ece, fit_calibration
from pipeline.evidence.metrics import nll, predicted, score_named
from pipeline.evidence.operating_point import choose_threshold, degenerate, parse
from pipeline.selection.competition import Candidate
from pipeline.selection.evaluation import Evaluation
from pipeline.selection.statistics import Paired, holm, paired

SMALL_CLASS = 20  # test patients of a class below which intervals are wide


@dataclass
class Served:
    """A model as it would be served: its calibration and threshold, and its test predictions."""

    calibration: Calibration
    probs: np.ndarray  # (N, classes) served test probabilities
    labels: np.ndarray  # (N,) at the operating point
    val_nll_before: float = np.nan
    val_nll_after: float = np.nan


@dataclass
class Assessed:
    """One competing model, tested."""

    candidate: Candidate
    evaluation: Evaluation
    served: Served
    test: Uncertain  # metrics at the operating point, with intervals
    per_class: dict[str, Uncertain]  # one-vs-rest AUROC, sensitivity, specificity
    ece: float  # of the served probabilities
    brier: float
    ece_before: float  # of the unscaled ones
    test_value: float  # the selection metric on test, defined as on validation
    degenerate: list[str] = field(default_factory=list)
    versus_champion: Paired | None = None  # None for the champion itself
    p_holm: float | None = None

    @property
    def backbone(self) -> str:
        return self.candidate.backbone

    @property
    def threshold(self) -> float | None:
        return self.served.calibration.threshold

    @property
    def temperature(self) -> float | None:
        return self.served.calibration.temperature


def serve(ev: Evaluation, calibrate: bool, spec: str) -> Served:
    """The temperature (when ``calibrate``) and then the threshold, both on the model's own
    validation predictions; its served test probabilities and labels."""
    cal = fit_calibration(ev.val_networks, ev.val_target) if calibrate else Calibration()
    val = cal.probabilities(ev.val_networks)
    threshold = None
    if ev.networks.shape[-1] == 2:
        pos = 1 if ev.positive_index is None else ev.positive_index
        threshold = choose_threshold(val, ev.val_target, pos, spec)
    cal = Calibration(cal.temperature, threshold)
    probs = cal.probabilities(ev.networks)
    return Served(cal, probs, predicted(probs, ev.positive_index, threshold),
                  nll(ev.val_probs, ev.val_target), nll(val, ev.val_target))


def test_resamples(cfg: DictConfig, champion: Evaluation) -> Resamples:
    """The replicates every row is scored on: the champion's test patients, stratified by the
    classes of their images; images when the data have no patient ids."""
    unit = "patient" if champion.data.get("split_unit", "patient") == "patient" else "image"
    return resample(champion.patients, champion.target, int(cfg.select.bootstrap), int(cfg.seed),
                    unit)


def assess(cfg: DictConfig, ranked: Sequence[Candidate],
           evaluations: dict[str, Evaluation]) -> tuple[list[Assessed], Resamples]:
    """Every candidate assessed, the champion (first) included; paired against the champion,
    Holm-adjusted over those comparisons."""
    spec = str(cfg.select.operating_point)
    parse(spec)  # a bad spec stops before any bootstrap
    calibrate = bool(cfg.select.calibrate)
    champion = evaluations[ranked[0].backbone]
    samples = test_resamples(cfg, champion)
    out: list[Assessed] = []
    for cand in ranked:
        ev = evaluations[cand.backbone]
        if ev.files != champion.files:
            raise ValueError(f"{cand.backbone} was tested on other images than the champion")
        item = assess_one(cand, ev, serve(ev, calibrate, spec), samples, str(cfg.select.metric))
        if out:
            item.versus_champion = paired(item.served.probs, out[0].served.probs, ev.target,
                                          ev.positive_index, samples, ev.patients)
        out.append(item)
    adjusted = holm([a.versus_champion.p_value for a in out[1:]])
    for item, p in zip(out[1:], adjusted, strict=True):
        item.p_holm = p
    return out, samples


def assess_one(cand: Candidate, ev: Evaluation, served: Served, samples: Resamples,
               metric: str) -> Assessed:
    """One model's test metrics at its operating point, with intervals and flags."""
    pos, threshold = ev.positive_index, served.calibration.threshold
    test = bootstrap(served.probs, ev.target, pos, threshold, samples)
    per_class = bootstrap_classes(served.probs, ev.target, pos, threshold, samples)
    return Assessed(
        cand, ev, served, test, {ev.classes[k]: u for k, u in per_class.items()},
        ece(served.probs, ev.target, pos), brier(served.probs, ev.target, pos),
        ece(ev.probs, ev.target, pos), score_named(metric, ev.probs, ev.target, pos),
        degenerate(served.labels, ev.classes, test.degenerate_intervals()),
    )


def small_classes(ev: Evaluation) -> dict[str, int]:
    """Classes with test images of fewer than SMALL_CLASS patients: their patient counts."""
    out = {}
    patients = np.asarray(ev.patients)
    for k, name in enumerate(ev.classes):
        n = len(set(patients[ev.target == k].tolist()))
        if n < SMALL_CLASS:
            out[name] = n
    return out


def small_test_warning(ev: Evaluation) -> str | None:
    """What to say when the test split is small (None when it is not)."""
    small = small_classes(ev)
    if not small:
        return None
    listing = ", ".join(f"{c} {n}" for c, n in small.items())
    return (f"the test split has fewer than {SMALL_CLASS} patients of some class "
            f"({listing}): every interval is wide and backbones are hard to tell apart; "
            "cross-validate the search (sweep.cv_folds=5) and add data where you can")
