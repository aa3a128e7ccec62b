"""The Limitations list of a selection: one sentence per fact that limits what its numbers mean
(random weights, few test patients in a class, a split by image or with overlap, a test split
used again, external data that overlapped the development data, a temperature at its bound,
a degenerate operating point). Written from facts only."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.evidence.calibration import TEMPERATURES
from pipeline.selection.assessment import SMALL_CLASS, Assessed, small_classes
from pipeline.selection.facts import Facts


def limitations(facts: Facts, assessed: Sequence[Assessed]) -> list[str]:
    champion = assessed[0]
    out = []
    if facts.random_weights:
        out.append(f"The backbones ({', '.join(facts.weights['random'])}) were trained from "
                   "random weights, without ImageNet pretraining: the results describe models "
                   "trained from scratch on this data, not the pretrained models papers report.")
    small = small_classes(champion.evaluation)
    if small:
        listing = ", ".join(f"{c} ({n})" for c, n in small.items())
        out.append(f"Few test patients (under {SMALL_CLASS}) in class(es) {listing}: their "
                   "intervals are wide and small differences cannot be detected.")
    if facts.split_unit == "image":
        out.append("The data carry no patient identifiers: the splits and the bootstrap are by "
                   "image, so one patient's images may sit in training and test, and the "
                   "intervals may be too narrow.")
    if facts.patient_overlap:
        how = "as the dataset gave the splits" if facts.splits_given else "in the split"
        out.append(f"{facts.patient_overlap} patient(s) have images in more than one split "
                   f"({how}): the test images are not independent of the training ones.")
    if facts.duplicates_across_splits:
        out.append(f"{facts.duplicates_across_splits} group(s) of duplicate or near-duplicate "
                   "images straddle the splits: the test score is partly on training images.")
    if facts.test_uses > 1:
        out.append(f"The test split has been used for selection {facts.test_uses} times: it is "
                   "no longer an untouched hold-out, and its scores are optimistic.")
    for run in facts.external:
        n = int(run.data.metrics.get("n_overlap", 0))
        if n:
            total = n + int(run.data.metrics.get("n_images", 0))
            out.append(f"External validation on {run.data.tags.get('dataset', '?')}: {n:,} of "
                       f"{total:,} images were also in the development data and were left "
                       "out.")
    for item in assessed:
        if item.served.calibration.at_bound:
            out.append(f"The temperature of {item.backbone} stopped at its search bound "
                       f"({item.temperature:.2f}, range {TEMPERATURES[0]}-{TEMPERATURES[1]}): "
                       "its probabilities remain miscalibrated.")
        if item.degenerate:
            out.append(f"{item.backbone}'s operating point is degenerate "
                       f"({'; '.join(item.degenerate)}): its thresholded metrics say little.")
        missing = item.test.undefined
        if missing:
            out.append(f"{item.backbone}: in some bootstrap replicates a metric was undefined "
                       f"({', '.join(f'{k} {n}' for k, n in missing.items())} of "
                       f"{item.test.n_replicates}); its interval is over the others.")
    if champion.temperature is not None and champion.ece > champion.ece_before:
        why = (": its networks disagree, and a mean of calibrated networks is under-confident"
               if champion.evaluation.networks.shape[0] > 1 else "")
        out.append(f"Temperature scaling raised the champion's test ECE "
                   f"({champion.ece_before:.3f} unscaled, {champion.ece:.3f} as served){why}.")
    if facts.folds > 1:
        out.append(f"Validation scores are means over {facts.folds} folds of single fold "
                   "networks, while each model tested averages its fold networks: validation "
                   "minus test mixes selection optimism with the gain of averaging.")
    ensemble = next((a for a in assessed if a.candidate.kind == "ensemble"), None)
    if ensemble is not None and facts.folds > 1 and ensemble.temperature is not None:
        out.append(f"The {ensemble.backbone}'s temperature was fitted on its members' "
                   "out-of-fold predictions (one fold network each), while it serves the mean of "
                   "all their fold networks.")
    return out
