"""A dataset described for people: classes, per-split counts and patients, skipped files,
duplicate groups; what ``python -m pipeline.describe_data`` prints above its JSON line."""

from __future__ import annotations

from pipeline.data.bundle import DataBundle
from pipeline.data.layouts import printable
from pipeline.data.splits import SPLIT_NAMES

_SHOW_SKIPPED = 20
_SHOW_DUPLICATES = 20


def print_description(bundle: DataBundle, summary: dict) -> None:
    """Everything but the fingerprint and the JSON line, one fact per line."""
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


def print_duplicates(bundle: DataBundle, across: int) -> None:
    """Each duplicate group with its rows' split, label and patient."""
    groups = bundle.duplicates
    print(f"duplicate image groups: {len(groups)} ({across} across splits)")
    for group in groups[:_SHOW_DUPLICATES]:
        rows = ", ".join(f"{printable(bundle.files[r])} [{_where(bundle, r)}]" for r in group.rows)
        labels = {int(bundle.labels[r]) for r in group.rows}
        print(f"  {group.kind()}{' (labels differ)' if len(labels) > 1 else ''}: {rows}")
    if len(groups) > _SHOW_DUPLICATES:
        print(f"  ... and {len(groups) - _SHOW_DUPLICATES} more")


def _where(bundle: DataBundle, row: int) -> str:
    """'split, label' and the patient where one is known (not just the file's own name)."""
    text = f"{bundle.split[row]}, {bundle.classes[bundle.labels[row]]}"
    patient = str(bundle.patients[row])
    return text if patient == bundle.files[row] else f"{text}, patient {printable(patient)}"
