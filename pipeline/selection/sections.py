"""The selection report's HTML sections, each from the selection's rows and facts: the data, the
protocol, the comparison, the per-class results, the limitations, the external validations and
the reporting checklist. Hand-written HTML: tables and paragraphs, no template engine needed."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from pipeline.evidence.metrics import METRICS, PER_CLASS
from pipeline.selection.comparison import TEST_COLUMNS, num, with_ci
from pipeline.selection.facts import Facts
from pipeline.selection.methods import protocol_rows


def table(header: Sequence[str], body: Sequence[Sequence[Any]], ident: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in body)
    attribute = f' id="{ident}"' if ident else ""
    return f"<table{attribute}><tr>{head}</tr>{rows}</table>"


def paragraphs(texts: Sequence[str], css: str = "") -> str:
    attribute = f" class='{css}'" if css else ""
    return "".join(f"<p{attribute}>{html.escape(t)}</p>" for t in texts)


def data_section(facts: Facts) -> str:
    body = [[s, facts.splits.get(s, "-"), facts.patients.get(s, "-"),
             ", ".join(f"{c} {n}" for c, n in facts.class_counts.get(s, {}).items())]
            for s in ("train", "val", "test")]
    lines = [f"Classes: {', '.join(facts.classes)}.",
             f"Split unit: {facts.split_unit}; patients in two splits: {facts.patient_overlap}.",
             f"Duplicate image groups: {facts.duplicate_groups}, "
             f"{facts.duplicates_across_splits} across splits (dataset.on_duplicate="
             f"{facts.on_duplicate})."]
    return ("<h2 id='data'>Data</h2>" + paragraphs(lines)
            + table(["split", "images", "patients", "per class"], body, "splits"))


def protocol_section(facts: Facts, commands: Sequence[str]) -> str:
    listing = "".join(f"<li><code>{html.escape(c)}</code></li>" for c in commands)
    return ("<h2 id='protocol'>Protocol</h2>" + table(["", "value"], protocol_rows(facts),
                                                      "protocol")
            + f"<p>The studies were produced by:</p><ul id='commands'>{listing}</ul>")


def comparison_table(rows: Sequence[dict], metric: str, unit: str) -> str:
    header = ["Model", f"{metric} (selection)", "validation − test", *TEST_COLUMNS.values(),
              "ΔAUROC vs champion", f"p (paired {unit} bootstrap)", "p (Holm)", "ECE", "Brier",
              "Threshold", "Temperature", "Flag", "Run"]
    body = []
    for row in rows:
        name = row["backbone"] + (" (champion)" if row["winner"] else "")
        if row["recipe"] and row["kind"] == "backbone":
            name += f" (recipe of paper {row['recipe']})"
        temperature = num(row["temperature"], ".3f") + (
            " (at its bound)" if row["temperature_at_bound"] else "")
        body.append([name, num(row[metric]), num(row["val_minus_test"], "+.3f"),
                     *(with_ci(row[k], row[f"{k}_ci"]) for k in TEST_COLUMNS),
                     with_ci(row["delta_auroc"], row["delta_auroc_ci"], "+.3f"),
                     num(row["p_value"], ".3g"), num(row["p_holm"], ".3g"), num(row["ece"]),
                     num(row["brier"]), num(row["threshold"]), temperature,
                     "; ".join(row["degenerate"]), row["run_id"]])
    return table(header, body, "comparison")


def per_class_section(rows: Sequence[dict], classes: Sequence[str]) -> str:
    """One-vs-rest AUROC, sensitivity and specificity per class, with intervals."""
    if len(classes) < 3:
        return ""
    body = [[row["backbone"], c, *(with_ci(row["per_class"][c][m], row["per_class"][c][f"{m}_ci"])
                                   for m in PER_CLASS)]
            for row in rows for c in classes]
    return ("<h3 id='per-class'>Per class (one-vs-rest, at each model's operating point)</h3>"
            + table(["Model", "class", "AUROC", "Sensitivity", "Specificity"], body,
                    "per-class-table"))


def limitations_section(items: Sequence[str]) -> str:
    listing = "".join(f"<li>{html.escape(t)}</li>" for t in items) or "<li>None found.</li>"
    return f"<h2 id='limitations'>Limitations</h2><ul id='limitations-list'>{listing}</ul>"


def external_section(runs: Sequence[Any]) -> str:
    if not runs:
        return ("<h2 id='external'>External validation</h2><p>None logged for the champion yet "
                "(python -m pipeline.evaluate --model champion dataset=...).</p>")
    body = []
    for r in runs:
        m = r.data.metrics
        body.append([r.data.tags.get("dataset", "?"), int(m.get("n_images", 0)),
                     int(m.get("n_overlap", 0)),
                     *(with_ci(m.get(f"external_{n}"), [m.get(f"external_{n}_ci_low"),
                                                        m.get(f"external_{n}_ci_high")])
                       for n in METRICS), r.info.run_id])
    return ("<h2 id='external'>External validation</h2>"
            "<p>Images also in the development data (the same near-duplicate hash that guards "
            "the splits) are left out and counted.</p>"
            + table(["dataset", "images scored", "left out (in development data)",
                     *TEST_COLUMNS.values(), "run"], body, "external-table"))


def checklist_section(rows: Sequence[tuple[str, str, str]]) -> str:
    return ("<h2 id='checklist'>Reporting checklist (CLAIM 2024, TRIPOD+AI)</h2>"
            + table(["checklist", "item", "value"], rows, "checklist-table"))
