"""The methods paragraph and the protocol table of a selection: what was done, in words a paper
could use, every statement taken from the selection's facts (``facts.Facts``), none assumed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.selection.assessment import Assessed
from pipeline.selection.facts import Facts


def _searched(studies: Sequence[Any]) -> str:
    names = sorted({p for s in studies for t in s.trials for p in t.params})
    text = ", ".join(n.split(".")[-1].replace("_", " ") for n in names) or "the hyperparameters"
    return text[:1].upper() + text[1:]


def weights_text(facts: Facts) -> str:
    parts = []
    for kind, backbones in facts.weights.items():
        what = ("random weights (no pretraining)" if kind == "random" else
                f"ImageNet weights ({kind.removeprefix('imagenet:')})" if kind.startswith(
                    "imagenet:") else
                f"the backbone of this pipeline's run {kind.removeprefix('run:')} (its head "
                "not taken)" if kind.startswith("run:") else
                f"the weights file {kind.removeprefix('file:')}")
        parts.append(f"{what} for {', '.join(backbones)}")
    return "; ".join(parts) or "not logged by the competing runs"


def split_text(facts: Facts) -> str:
    """How the splits were made, and what keeps them apart: only what the data support."""
    if facts.split_unit == "image":
        unit = ("by image, as the data give no patient identifiers (images of one patient may "
                "appear in two splits)")
    elif facts.patient_overlap:
        unit = (f"with {facts.patient_overlap} patient(s) having images in more than one "
                "split")
    else:
        unit = "grouped by patient: no patient has images in two splits"
    if not facts.splits_given:
        how = "carved by the pipeline, stratified by class"
    elif not facts.carved:
        how = f"as given by the dataset ({', '.join(facts.splits_given)})"
    else:
        how = (f"{', '.join(facts.splits_given)} as given by the dataset, "
               f"{', '.join(facts.carved)} carved from its training rows by the pipeline")
    return f"{how}, {unit}"


def duplicates_text(facts: Facts) -> str:
    if not facts.duplicate_groups:
        return "No duplicate or near-duplicate images were found."
    where = (f"{facts.duplicates_across_splits} of them straddle splits"
             if facts.duplicates_across_splits else "each was kept within one split")
    return (f"{facts.duplicate_groups} group(s) of duplicate or near-duplicate images were found "
            f"(dataset.on_duplicate={facts.on_duplicate}); {where}.")


def trials_text(facts: Facts) -> str:
    return "; ".join(f"{b}: {c + p + f} trials ({c} complete, {p} pruned, {f} failed)"
                     for b, (c, p, f) in facts.trials.items())


def methods_paragraph(facts: Facts, assessed: Sequence[Assessed], studies: Sequence[Any]) -> str:
    champion = assessed[0]
    metric = facts.metric.removeprefix("val_").replace("_", " ").replace("auroc", "AUROC")
    splits, patients = facts.splits, facts.patients
    unit = facts.bootstrap_unit

    def counted(split: str, words: bool = False) -> str:
        images = f"{splits.get(split, '?')}{' images' if words else ''}"
        if facts.split_unit == "image":
            return images
        return f"{images}, {patients.get(split, '?')}{' patients' if words else ''}"

    cv = (f" Each trial was trained on {facts.folds} folds of the training and validation data, "
          f"and its score was the mean of the folds' validation {metric}." if facts.folds > 1
          else "")
    ensemble = (f" The {facts.ensemble} trials across backbones (mean probability) competed as "
                "one more model, scored as the backbones were." if facts.ensemble else "")
    recipe = (f" The best trial of the papers' published recipes ({facts.recipe}) was tested "
              "beside them." if facts.recipe else "")
    uses = ("The test split was used after selection only, by this selection" if
            facts.test_uses == 1 else
            f"The test split was used after selection; this test split has now been used for "
            f"selection {facts.test_uses} times, so it is no longer an untouched hold-out")
    comparisons = len(assessed) - 1
    compared = (f" Each model was compared with the champion on the same test {unit}s by a "
                f"paired {unit} bootstrap of the AUROC difference (p-values Holm-adjusted over "
                f"{comparisons} comparison(s))." if comparisons else "")
    calibration = ""
    if facts.calibrated:
        cal = f" (champion: T = {champion.temperature:.2f}" + (
            ", at its search bound)" if champion.served.calibration.at_bound else ")")
        calibration = (" Each model's probabilities were temperature-scaled: one temperature "
                       "per model, applied to each of its networks before averaging and fitted "
                       f"on those networks' own validation predictions{cal}.")
    operating = (f" Decision thresholds were chosen on validation ({facts.operating_point}"
                 f"{', on calibrated probabilities' if facts.calibrated else ''}) and applied "
                 "unchanged to the test split." if champion.threshold is not None else "")
    return (
        f"The {sum(splits.values())} images of dataset {facts.dataset} "
        f"({', '.join(facts.classes)}) were split into training ({counted('train', True)}), "
        f"validation ({counted('val')}) and test ({counted('test')}) sets, "
        f"{split_text(facts)}. {duplicates_text(facts)} Initial weights: "
        f"{weights_text(facts)}; images were "
        f"{'/'.join(facts.image_sizes)} px and each trial trained for at most "
        f"{'/'.join(sorted(set(facts.epochs.values())))} epochs. {_searched(studies)} were "
        f"searched with Optuna ({trials_text(facts)}).{cv} Each backbone's best trial was chosen "
        f"on its validation {metric}.{ensemble}{recipe} The champion, {champion.backbone}, is the "
        f"model that scored highest there. {uses}: 95% confidence intervals come from "
        f"{facts.n_replicates} bootstrap replicates resampling {unit}s (stratified by the "
        f"classes of their images).{compared}{operating}{calibration}"
    )


def protocol_rows(facts: Facts) -> list[list[str]]:
    """The protocol table: one fact per row."""
    return [
        ["metric", facts.metric],
        ["weights", weights_text(facts)],
        ["image size (px)", "/".join(facts.image_sizes)],
        ["epoch budget", ", ".join(f"{b}: {e}" for b, e in facts.epochs.items())],
        ["trials per backbone", trials_text(facts)],
        ["cross-validation folds", str(facts.folds) if facts.folds > 1 else "none (one split)"],
        ["split unit", facts.split_unit],
        ["splits made", split_text(facts)],
        ["patients in two splits", str(facts.patient_overlap)],
        ["duplicate groups (across splits)",
         f"{facts.duplicate_groups} ({facts.duplicates_across_splits})"],
        ["bootstrap", f"{facts.n_replicates} replicates of {facts.bootstrap_unit}s, stratified "
                      f"by their classes ({facts.strata} strata)"],
        ["paired test", f"paired {facts.bootstrap_unit} bootstrap of ΔAUROC, Holm-adjusted"],
        ["operating point", facts.operating_point],
        ["calibration", "temperature per model, on its networks' validation predictions"
         if facts.calibrated else "none"],
        ["test split uses for selection", str(facts.test_uses)],
        ["seed", facts.seed],
        ["split seed", facts.split_seed],
        ["git commit", facts.commit],
        ["data fingerprint", facts.fingerprint],
    ]
