"""Paper 000's Table 2, with what it lacked: one row per backbone, its best run's validation
score, its test metrics at the operating point with 95% patient-bootstrap intervals, its
difference from the champion, and its calibration.

Rows are plain dicts (the JSON line's ``table``); Markdown for people, CSV for spreadsheets.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

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


def table_row(item: Assessed, metric: str, winner: bool) -> dict[str, Any]:
    """One backbone's row; keys are also the CSV header."""
    cand = item.candidate
    row: dict[str, Any] = {
        "backbone": cand.backbone,
        "run_id": cand.run_id,
        "trials_complete": cand.complete,
        "trials_pruned": cand.pruned,
        metric: cand.value,
    }
    for key in TEST_COLUMNS:
        name = key.removeprefix("test_")
        row[key] = _finite(item.test.values.get(name))
        row[f"{key}_ci"] = [_finite(v) for v in item.test.intervals.get(name, (None, None))]
    versus = item.versus_champion
    row["delta_auroc"] = None if versus is None else _finite(versus.delta_auroc)
    row["delta_auroc_ci"] = None if versus is None else [_finite(v) for v in versus.delta_ci]
    row["p_value"] = None if versus is None else _finite(versus.p_value)
    row["ece"] = _finite(item.ece)
    row["brier"] = _finite(item.brier)
    row["threshold"] = item.threshold
    for key in ("trainable_params", "total_params"):
        counts = [r.data.metrics.get(key) for r in cand.runs]
        ok = all(c is not None and math.isfinite(c) for c in counts)
        row[key] = int(sum(counts)) if ok and counts else None
    row["winner"] = winner
    return row


def to_markdown(rows: Sequence[Mapping[str, Any]], metric: str, operating_point: str) -> str:
    binary = any(row.get("threshold") is not None for row in rows)
    where = f" at the {operating_point} threshold chosen on validation" if binary else ""
    header = ["Backbone", "Trials (complete/pruned)", f"{metric} (selection)",
              *TEST_COLUMNS.values(), "ΔAUROC vs champion", "p", "ECE", "Brier",
              *(["Threshold"] if binary else []), "Trainable params", "Total params", "Run"]
    lines = [f"Test metrics{where}, with 95% patient-bootstrap intervals.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        name = f"**{row['backbone']}** (winner)" if row["winner"] else row["backbone"]
        cells = [name, f"{row['trials_complete']}/{row['trials_pruned']}", _num(row[metric])]
        cells += [_with_ci(row[key], row[f"{key}_ci"]) for key in TEST_COLUMNS]
        cells += ["-" if row["delta_auroc"] is None else _with_ci(row["delta_auroc"],
                                                                  row["delta_auroc_ci"], "+.3f"),
                  _num(row["p_value"], ".3g"), _num(row["ece"]), _num(row["brier"])]
        if binary:
            cells.append(_num(row["threshold"]))
        cells += [_count(row["trainable_params"]), _count(row["total_params"]), row["run_id"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _with_ci(value: float | None, ci: Sequence[float | None] | None, fmt: str = ".3f") -> str:
    if value is None:
        return "-"
    if not ci or ci[0] is None or ci[1] is None:
        return format(value, fmt)
    return f"{value:{fmt}} [{ci[0]:{fmt}}, {ci[1]:{fmt}}]"


def _num(value: float | None, fmt: str = ".4f") -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, fmt)


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
