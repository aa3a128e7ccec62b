"""The reporting checklist that ends a selection report: the CLAIM 2024 and TRIPOD+AI items this
tool can fill from what it did, each with its value or "not available: <why>"."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.selection.assessment import Assessed
from pipeline.selection.facts import Facts
from pipeline.selection.methods import split_text, trials_text, weights_text


def _na(why: str) -> str:
    return f"not available: {why}"


def _partition_counts(facts: Facts) -> str:
    return "; ".join(
        f"{s}: {facts.splits.get(s, 0)} images, {facts.patients.get(s, 0)} patients ("
        + ", ".join(f"{c} {n}" for c, n in facts.class_counts.get(s, {}).items()) + ")"
        for s in ("train", "val", "test"))


def _external(facts: Facts) -> str:
    if not facts.external:
        return _na("no external validation of the champion is logged yet (python -m "
                   "pipeline.evaluate --model champion dataset=...)")
    return "; ".join(f"{r.data.tags.get('dataset', '?')}: {int(r.data.metrics.get('n_images', 0))}"
                     f" images, AUROC {r.data.metrics.get('external_auroc', float('nan')):.3f}"
                     for r in facts.external)


def checklist(facts: Facts, assessed: Sequence[Assessed], gallery: bool
              ) -> list[tuple[str, str, str]]:
    """(checklist, item, value) rows; ``gallery``: whether the report shows Grad-CAM images."""
    champion = assessed[0]
    disjoint = ("patient" if facts.split_unit == "patient" and not facts.patient_overlap
                else _na("the splits are not disjoint by patient") if facts.patient_overlap
                else "image (no patient identifiers)")
    threshold = (f"{facts.operating_point} on validation"
                 f"{', calibrated probabilities' if facts.calibrated else ''}: "
                 f"{champion.threshold:.4f}" if champion.threshold is not None
                 else _na("a multi-class task: the most probable class is called"))
    calibration = (f"temperature {champion.temperature:.3f} per network, fitted on validation; "
                   f"test ECE {champion.ece_before:.3f} before, {champion.ece:.3f} after"
                   if champion.temperature is not None else _na("select.calibrate=false"))
    rows = [
        ("CLAIM 2024", "Data source and partitions", f"{facts.dataset}: {split_text(facts)}"),
        ("CLAIM 2024", "Level at which partitions are disjoint", disjoint),
        ("CLAIM 2024 / TRIPOD+AI", "Counts per partition", _partition_counts(facts)),
        ("CLAIM 2024", "Data exclusions", f"{facts.skipped} unreadable image(s) left out"),
        ("CLAIM 2024", "Duplicates across partitions",
         f"{facts.duplicate_groups} duplicate group(s), {facts.duplicates_across_splits} across "
         "splits"),
        ("CLAIM 2024 / TRIPOD+AI", "Model initialisation", weights_text(facts)),
        ("CLAIM 2024", "Training: image size, epochs",
         f"{'/'.join(facts.image_sizes)} px; at most "
         f"{'/'.join(sorted(set(facts.epochs.values())))} epochs"),
        ("CLAIM 2024 / TRIPOD+AI", "Hyperparameter search", trials_text(facts)),
        ("CLAIM 2024 / TRIPOD+AI", "How the final model was selected",
         f"the highest {facts.metric} (validation) among each backbone's best trial"
         + (f", mean over {facts.folds} folds" if facts.folds > 1 else "")),
        ("CLAIM 2024", "Ensembling", facts.ensemble or "none"),
        ("CLAIM 2024 / TRIPOD+AI", "Metrics with uncertainty",
         f"95% percentile intervals, {facts.n_replicates} stratified {facts.bootstrap_unit} "
         "bootstrap replicates"),
        ("CLAIM 2024", "Statistical comparison of models",
         f"paired {facts.bootstrap_unit} bootstrap of ΔAUROC, Holm-adjusted"
         if len(assessed) > 1 else _na("one model competed")),
        ("CLAIM 2024 / TRIPOD+AI", "Internal testing",
         f"held-out test split, used for selection {facts.test_uses} time(s)"),
        ("CLAIM 2024 / TRIPOD+AI", "External testing", _external(facts)),
        ("CLAIM 2024 / TRIPOD+AI", "Operating point and how it was chosen", threshold),
        ("TRIPOD+AI", "Calibration", calibration),
        ("TRIPOD+AI", "Sample size justification",
         _na("the tool does not plan sample sizes; see the limitations for small classes")),
        ("CLAIM 2024 / TRIPOD+AI", "Demographics and subgroups",
         _na("the datasets give no demographic fields the tool reads")),
        ("CLAIM 2024", "Failure analysis",
         "Grad-CAM of the champion's correct and wrong test calls, above" if gallery
         else _na("no single network to explain (an ensemble), or its rebuild failed")),
        ("TRIPOD+AI", "Code and software", f"git commit {facts.commit}"),
    ]
    return rows
