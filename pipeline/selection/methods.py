"""The methods paragraph of a selection: what was done, in words a paper could use, every number
taken from the store and the selection itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig

from pipeline.selection.assessment import Assessed
from pipeline.selection.competition import Competition


def _searched(studies: Sequence[Any]) -> str:
    names = sorted({p for s in studies for t in s.trials for p in t.params})
    return ", ".join(n.split(".")[-1].replace("_", " ") for n in names) or "the configuration"


def methods_paragraph(cfg: DictConfig, comp: Competition, assessed: Sequence[Assessed],
                      studies: Sequence[Any]) -> str:
    champion = assessed[0]
    metric = comp.metric.removeprefix("val_").replace("_", " ")
    data = champion.evaluation.data
    splits, patients = data.get("splits", {}), data.get("patients", {})
    total = sum(splits.values()) if splits else len(champion.evaluation.files)
    unit = data.get("split_unit", "patient")
    grouping = ("grouped by patient, so that no patient appears in two splits" if unit == "patient"
                else "by image, as the data gives no patient identifiers (images of one patient "
                "may appear in two splits)")
    duplicates = data.get("duplicate_groups", 0)
    dup = (f" {duplicates} groups of duplicate images were kept within one split." if duplicates
           and champion.evaluation.on_duplicate == "group" else "")
    folds = int(champion.candidate.reference_run.data.params.get("objective.cv_folds", "1") or 1)
    trials = sum(len(s.trials) for s in studies)
    cv = (f" Each trial was trained on {folds} folds of the training and validation patients "
          f"(stratified by class, grouped by patient), and its objective was the mean of the "
          f"folds' validation {metric}." if folds > 1 else "")
    singles = [a for a in assessed if not a.candidate.members]
    backbones = ", ".join(a.backbone for a in singles)
    ensembles = [a.backbone for a in assessed if a.candidate.members]
    ensemble = (f" The {ensembles[0]} trials across backbones (mean probability, chosen on "
                "validation) competed as one more model." if ensembles else "")
    binary = champion.threshold is not None
    tests = ("DeLong's test" if binary else "a paired bootstrap")
    operating = (f" Decision thresholds were chosen on validation ({cfg.select.operating_point})"
                 " and applied unchanged to the test split." if binary else "")
    calibration = ""
    if champion.calibration:
        cal = champion.calibration
        calibration = (f" The champion's probabilities were temperature-scaled on validation "
                       f"(T = {cal['temperature']:.2f}; test ECE {cal['ece_before']:.3f} before, "
                       f"{cal['ece_after']:.3f} after).")
    return (
        f"The {total} images of dataset {comp.dataset} ({', '.join(champion.evaluation.classes)}) "
        f"were split into training ({splits.get('train', '?')} images, "
        f"{patients.get('train', '?')} patients), validation ({splits.get('val', '?')}, "
        f"{patients.get('val', '?')}) and test ({splits.get('test', '?')}, "
        f"{patients.get('test', '?')}) sets, stratified by class and {grouping}.{dup} For each of "
        f"{len(singles)} backbone(s) ({backbones}), {_searched(studies)} were searched with "
        f"Optuna over {trials} trials in all, with pruning of unpromising trials.{cv} Each "
        f"backbone's best trial was chosen on its validation {metric}.{ensemble} The champion, "
        f"{champion.backbone}, is the model that scored highest there. The test "
        f"split was used once, after selection: each chosen model was evaluated on it "
        f"a single time, with 95% confidence intervals from {cfg.select.bootstrap} patient-level "
        f"bootstrap replicates, and compared with the champion on the same test patients by "
        f"{tests}.{operating}{calibration}"
    )
