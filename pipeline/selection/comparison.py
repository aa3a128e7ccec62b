"""Paper 000's Table 2: one row per backbone, its best run's validation score and test metrics.

Rows are plain dicts (the JSON line's ``table``); Markdown for people, CSV for spreadsheets.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

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


def table_row(
    backbone: str, run_id: str, complete: int, pruned: int, metric: str, value: float,
    test_metrics: Mapping[str, float], run_metrics: Mapping[str, float], winner: bool,
) -> dict[str, Any]:
    """One backbone's row; keys are also the CSV header."""
    row: dict[str, Any] = {
        "backbone": backbone,
        "run_id": run_id,
        "trials_complete": complete,
        "trials_pruned": pruned,
        metric: value,
    }
    row.update({key: test_metrics.get(key) for key in TEST_COLUMNS})
    for key in ("trainable_params", "total_params"):
        count = run_metrics.get(key)
        row[key] = int(count) if count is not None and math.isfinite(count) else None
    row["winner"] = winner
    return row


def to_markdown(rows: Sequence[Mapping[str, Any]], metric: str) -> str:
    header = ["Backbone", "Trials (complete/pruned)", f"{metric} (selection)",
              *TEST_COLUMNS.values(), "Trainable params", "Total params", "Run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        name = f"**{row['backbone']}** (winner)" if row["winner"] else row["backbone"]
        cells = [name, f"{row['trials_complete']}/{row['trials_pruned']}", _num(row[metric])]
        cells += [_num(row[key]) for key in TEST_COLUMNS]
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


def _num(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
