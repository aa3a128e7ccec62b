"""The ieee8023 covid-chestxray-dataset: metadata.csv rows (patient, finding, view) and images/."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from pipeline.data.layouts.common import Listing, dataset_root
from pipeline.data.layouts.csv_rows import drop_repeats, read_csv, refuse_outside
from pipeline.data.layouts.fs import rel, require_root

_CHESTXRAY = "metadata.csv and images/ (ieee8023 covid-chestxray-dataset)"


def scan_covid_chestxray(ds: DictConfig) -> Listing:
    root = dataset_root(ds)
    require_root(root, "covid_chestxray", _CHESTXRAY)
    modalities = list(ds.modalities) if ds.get("modalities") else None
    views = list(ds.views) if ds.get("views") else None
    required = ["patientid", "finding", "filename"]
    required += ["modality"] * bool(modalities) + ["view"] * bool(views)
    frame = read_csv(root / ds.metadata, required, "dataset.metadata",
                     f"dataset=covid_chestxray expects {_CHESTXRAY}")

    steps: list[str] = [f"{len(frame)} rows"]
    finding = frame["finding"].str.strip()
    frame = frame[(finding != "") & (finding.str.lower() != "todo")]
    steps.append(f"finding not todo/empty: {len(frame)}")
    if modalities:
        frame = frame[frame["modality"].str.strip().isin(modalities)]
        steps.append(f"modality in {modalities}: {len(frame)}")
    if views:
        frame = frame[frame["view"].str.strip().isin(views)]
        steps.append(f"view in {views}: {len(frame)}")

    rules = [(str(r.pattern).lower(), str(r.label)) for r in ds.get("label_rules") or []]
    default = ds.get("default_label")
    labels = [_first_rule(f, rules, default) for f in frame["finding"].str.lower()]
    frame = frame.loc[[label is not None for label in labels]]
    labels = [label for label in labels if label is not None]
    steps.append(f"label_rules/default_label: {len(frame)}")

    named = [label for _, label in rules] + ([str(default)] if default else [])
    classes = list(dict.fromkeys(named))
    csv_path = root / ds.metadata
    rows = [int(i) + 2 for i in frame.index]  # the CSV's own line numbers (header = line 1)
    image_dir = str(ds.image_dir)
    paths = [os.path.join(image_dir, name.strip()) for name in frame["filename"]]
    refuse_outside(ds, root, csv_path, "filename", rows, paths)
    patients = [p.strip() or None for p in frame["patientid"]]
    keep = drop_repeats(root, csv_path, rows, paths,
                         {"finding": labels, "patientid": patients})
    files = [_as_listed(root, paths[k]) for k in keep]
    return Listing(root, files, [labels[k] for k in keep], [patients[k] for k in keep], classes,
                   filters=" -> ".join(steps))


def _as_listed(root: Path, path: str) -> str:
    """A file as the Listing keeps it: relative to root (as before), or as given when outside."""
    try:
        return rel(root / path, root)
    except ValueError:
        return path


def _first_rule(finding: str, rules: list[tuple[str, str]], default: str | None) -> str | None:
    for pattern, label in rules:
        if pattern in finding:
            return label
    return str(default) if default else None
