"""Describe the configured dataset before training on it: classes, per-split counts, patients,
skipped files, duplicate images and the fingerprint; the last line is one JSON object.

    python -m pipeline.describe_data dataset=covid_chestxray dataset.image_size=64
"""

from __future__ import annotations

import logging
import warnings

from pipeline.cli import print_json_line, run
from pipeline.config import compose
from pipeline.data import load_data
from pipeline.data.duplicates import DuplicateImageWarning
from pipeline.data.layouts import printable
from pipeline.data.sources import BadImageWarning
from pipeline.data.splits import SPLIT_NAMES

_SHOW_SKIPPED = 20
_SHOW_DUPLICATES = 20


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = compose(argv)
    with warnings.catch_warnings():
        # Skipped files and duplicates are listed below in full; the loader's one-line warnings
        # would repeat them. Other warnings (folders not read, repeated CSV rows) still show.
        warnings.simplefilter("ignore", BadImageWarning)
        warnings.simplefilter("ignore", DuplicateImageWarning)
        bundle = load_data(cfg)
    summary = bundle.summary()

    root = printable(str(bundle.root))
    print(f"dataset: {bundle.name}  root: {root}  image size: {bundle.image_size}")
    print(f"classes: {', '.join(f'{i}={c}' for i, c in enumerate(bundle.classes))}", end="")
    print(f"  (positive: {bundle.positive_class})" if bundle.positive_class else "")
    width = max(len(c) for c in bundle.classes)
    print(f"{'split':<6} {'images':>7} {'patients':>9}  " + "  ".join(
        f"{c:>{width}}" for c in bundle.classes))
    for split in SPLIT_NAMES:
        counts = summary["class_counts"][split]
        print(
            f"{split:<6} {summary['splits'][split]:>7} {summary['patients'][split]:>9}  "
            + "  ".join(f"{counts[c]:>{width}}" for c in bundle.classes)
        )
    weights = bundle.class_weights().tolist()
    print("train class weights (balanced): " + ", ".join(
        f"{c}={w:.3f}" for c, w in zip(bundle.classes, weights, strict=True)))
    print(f"patients in more than one split: {summary['patient_overlap']}")
    print(f"skipped files: {len(bundle.skipped)}")
    for path, reason in bundle.skipped[:_SHOW_SKIPPED]:
        print(f"  {printable(path)}: {reason}")
    if len(bundle.skipped) > _SHOW_SKIPPED:
        print(f"  ... and {len(bundle.skipped) - _SHOW_SKIPPED} more")
    print_duplicates(bundle, summary["duplicates_across_splits"])
    print(f"fingerprint: {bundle.fingerprint}")
    print_json_line(summary)
    return 0


def print_duplicates(bundle, across: int) -> None:
    """Each duplicate group with its rows' split, label and patient."""
    groups = bundle.duplicates
    print(f"duplicate image groups: {len(groups)} ({across} across splits)")
    for group in groups[:_SHOW_DUPLICATES]:
        rows = ", ".join(f"{printable(bundle.files[r])} [{_where(bundle, r)}]" for r in group.rows)
        labels = {int(bundle.labels[r]) for r in group.rows}
        print(f"  {group.kind()}{' (labels differ)' if len(labels) > 1 else ''}: {rows}")
    if len(groups) > _SHOW_DUPLICATES:
        print(f"  ... and {len(groups) - _SHOW_DUPLICATES} more")


def _where(bundle, row: int) -> str:
    """'split, label' and the patient where one is known (not just the file's own name)."""
    text = f"{bundle.split[row]}, {bundle.classes[bundle.labels[row]]}"
    patient = str(bundle.patients[row])
    return text if patient == bundle.files[row] else f"{text}, patient {printable(patient)}"


if __name__ == "__main__":
    run(main)
