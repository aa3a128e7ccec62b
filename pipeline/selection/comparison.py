"""Paper 000's Table 2, with what it lacked: one row per backbone (and the ensemble and the best
recipe, when they compete), its best run's validation score and that score's drop on test, its
test metrics at the operating point with 95% patient-bootstrap intervals, its difference from the
champion with the paired test's raw and Holm-adjusted p-values, its calibration, and a flag when
its operating point is degenerate.

Rows are plain dicts (the JSON line's ``table``); Markdown for people, CSV for spreadsheets.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.evidence.bootstrap import Uncertain
from pipeline.selection.assessment import Assessed

# Test metrics in the table, in the paper's order, with their column titles.
TEST_COLUMNS = {
    "test_sensitivity": "Sensitivity",
    "test_specificity": "Specificity",
    "test_accuracy": "Accuracy",
    "test_f1": "F1",
    "test_precision": "Precision",
    "test_npv": "NPV",
    "test_auroc": "AUROC",
}


def with_intervals(result: Uncertain) -> dict[str, Any]:
    """``{name: value, name_ci: [low, high]}`` of one bootstrap result (None where undefined)."""
    out: dict[str, Any] = {}
    for name, value in result.values.items():
        out[name] = _finite(value)
        out[f"{name}_ci"] = [_finite(v) for v in result.intervals.get(name, (None, None))]
    return out


def table_row(item: Assessed, metric: str, winner: bool) -> dict[str, Any]:
    """One row; keys are also the CSV header."""
    cand = item.candidate
    row: dict[str, Any] = {
        "backbone": cand.backbone, "kind": cand.kind, "recipe": cand.recipe,
        "run_id": cand.run_id, "trials_complete": cand.complete, "trials_pruned": cand.pruned,
        "trials_failed": cand.failed, metric: cand.value,
        "val_minus_test": _finite(cand.value - item.test_value),
    }
    for key in TEST_COLUMNS:
        name = key.removeprefix("test_")
        row[key] = _finite(item.test.values.get(name))
        row[f"{key}_ci"] = [_finite(v) for v in item.test.intervals.get(name, (None, None))]
    versus = item.versus_champion
    row["delta_auroc"] = None if versus is None else _finite(versus.delta_auroc)
    row["delta_auroc_ci"] = None if versus is None else [_finite(v) for v in versus.delta_ci]
    row["p_value"] = None if versus is None else _finite(versus.p_value)
    row["p_holm"] = None if item.p_holm is None else _finite(item.p_holm)
    row["ece"] = _finite(item.ece)
    row["ece_uncalibrated"] = _finite(item.ece_before)
    row["brier"] = _finite(item.brier)
    row["threshold"] = item.threshold
    row["temperature"] = item.temperature
    row["temperature_at_bound"] = item.served.calibration.at_bound
    row["degenerate"] = list(item.degenerate)
    row["per_class"] = {name: with_intervals(u) for name, u in item.per_class.items()}
    for key in ("trainable_params", "total_params"):
        counts = [r.data.metrics.get(key) for r in cand.runs]
        ok = all(c is not None and math.isfinite(c) for c in counts)
        row[key] = int(sum(counts)) if ok and counts else None
    row["winner"] = winner
    return row


def to_markdown(rows: Sequence[Mapping[str, Any]], metric: str, operating_point: str,
                unit: str, n_replicates: int) -> str:
    """The table for people; ``unit``: what the bootstrap resampled (patient, image)."""
    binary = any(row.get("threshold") is not None for row in rows)
    where = f" at the {operating_point} threshold chosen on validation" if binary else ""
    header = ["Backbone", "Trials (complete/pruned/failed)", f"{metric} (selection)",
              "validation − test", *TEST_COLUMNS.values(), "ΔAUROC vs champion",
              f"p (paired {unit} bootstrap)", "p (Holm)", "ECE", "Brier",
              *(["Threshold"] if binary else []), "Temperature", "Flag", "Trainable params",
              "Total params", "Run"]
    lines = [f"Test metrics{where}, with 95% {unit}-bootstrap intervals ({n_replicates} "
             f"replicates, {unit}s stratified by their classes).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        name = f"**{row['backbone']}** (winner)" if row["winner"] else row["backbone"]
        if row["recipe"] and row["kind"] == "backbone":
            name += f" (recipe of paper {row['recipe']})"
        cells = [name, f"{row['trials_complete']}/{row['trials_pruned']}/{row['trials_failed']}",
                 num(row[metric]), num(row["val_minus_test"], "+.3f")]
        cells += [with_ci(row[key], row[f"{key}_ci"]) for key in TEST_COLUMNS]
        cells += ["-" if row["delta_auroc"] is None else with_ci(row["delta_auroc"],
                                                                  row["delta_auroc_ci"], "+.3f"),
                  num(row["p_value"], ".3g"), num(row["p_holm"], ".3g"), num(row["ece"]),
                  num(row["brier"])]
        if binary:
            cells.append(num(row["threshold"]))
        cells.append(num(row["temperature"], ".3f")
                     + (" (at its bound)" if row["temperature_at_bound"] else ""))
        cells.append("degenerate: " + "; ".join(row["degenerate"]) if row["degenerate"] else "")
        cells += [_count(row["trainable_params"]), _count(row["total_params"]), row["run_id"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per row; nested values (intervals, per-class results) as JSON."""
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: json.dumps(v) if isinstance(v, (list, dict)) else v
                      for k, v in row.items()} for row in rows)
    return out.getvalue()


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def with_ci(value: float | None, ci: Sequence[float | None] | None, fmt: str = ".3f") -> str:
    """``0.874 [0.812, 0.931]``; ``-`` when there is no value."""
    if value is None or not math.isfinite(value):
        return "-"
    if not ci or ci[0] is None or ci[1] is None:
        return format(value, fmt)
    return f"{value:{fmt}} [{ci[0]:{fmt}}, {ci[1]:{fmt}}]"


def num(value: float | None, fmt: str = ".4f") -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, fmt)


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
