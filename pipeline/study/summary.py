"""The study's outcome: state counts, the JSON summary, the table of finished trials."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial

from pipeline.common.urls import public_url
from pipeline.study.budget import FINISHED_STATES, STATE_NAMES


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


def state_counts(study: optuna.Study) -> dict[str, int]:
    counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
    for t in study.get_trials(deepcopy=False):
        if t.state in FINISHED_STATES:
            counts[STATE_NAMES[t.state]] += 1
    return counts


def summarize(study: optuna.Study, url: str, parent_run_id: str) -> dict:
    counts = state_counts(study)
    best = best_trial(study)
    return {
        "study_name": study.study_name,
        "storage": public_url(url),
        "parent_run_id": parent_run_id,
        "n_complete": counts["COMPLETE"],
        "n_pruned": counts["PRUNED"],
        "n_fail": counts["FAIL"],
        "best_value": best.value if best else None,
        "best_params": best.params if best else {},
        "best_run_id": best.user_attrs.get("mlflow_run_id") if best else None,
    }


def print_table(study: optuna.Study, metric: str) -> None:
    trials = [t for t in study.get_trials(deepcopy=False) if t.state in FINISHED_STATES]
    keys = sorted({k for t in trials for k in t.params})
    header = ["trial", "state", metric, "epochs", *keys]
    rows = [header]
    for t in trials:
        value = f"{t.value:.4f}" if t.value is not None else "-"
        epochs = t.user_attrs.get("epochs") or (max(t.intermediate_values, default=-1) + 1)
        rows.append([str(t.number), STATE_NAMES[t.state], value, str(epochs),
                     *[fmt(t.params.get(k, "-")) for k in keys]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print(f"\nstudy {study.study_name}: {len(trials)} finished trials", flush=True)
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
