"""The selection report: one self-contained HTML file (figures inline, nothing fetched) a paper can
quote: the data, the protocol, the comparison table, the figures, a methods paragraph and the
champion's external validations. Written under ``<state_dir>/reports/`` and logged with the
selection run. Hand-written HTML: it is a page of tables and images, no template engine needed."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from pipeline.config import state_dir
from pipeline.runs.context import Context
from pipeline.selection import figures
from pipeline.selection.assessment import Assessed
from pipeline.selection.comparison import TEST_COLUMNS
from pipeline.selection.competition import Competition
from pipeline.selection.methods import methods_paragraph
from pipeline.tracking.logged import as_logged
from pipeline.tracking.schema import Role, Tag
from pipeline.tracking.search import where
from pipeline.tracking.store import Store

STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #bbb;
padding:3px 6px;text-align:right}th{background:#eee}td:first-child{text-align:left}
figure{display:inline-block;margin:8px;vertical-align:top}figcaption{font-size:12px;
max-width:320px}img{max-width:100%}.gallery img{width:220px}"""


def report_path(cfg: DictConfig, comp: Competition) -> Path:
    return state_dir(cfg) / "reports" / f"selection-{comp.dataset}-{comp.fingerprint}.html"


def _img(data: bytes, ident: str, caption: str) -> str:
    src = "data:image/png;base64," + base64.b64encode(data).decode()
    return (f'<figure><img id="{ident}" src="{src}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(header: Sequence[str], body: Sequence[Sequence[Any]], ident: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in body)
    attribute = f' id="{ident}"' if ident else ""
    return f"<table{attribute}><tr>{head}</tr>{rows}</table>"


def _ci(row: dict, key: str) -> str:
    value, ci = row.get(key), row.get(f"{key}_ci") or [None, None]
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if None not in ci else "")


def comparison_table(rows: Sequence[dict], metric: str) -> str:
    header = ["Backbone", f"{metric} (selection)", *TEST_COLUMNS.values(), "ΔAUROC", "p",
              "ECE", "Brier", "Threshold", "Run"]
    body = []
    for row in rows:
        delta = "-" if row["delta_auroc"] is None else (
            f"{row['delta_auroc']:+.3f} [{row['delta_auroc_ci'][0]:+.3f}, "
            f"{row['delta_auroc_ci'][1]:+.3f}]")
        body.append([f"{row['backbone']}{' (champion)' if row['winner'] else ''}",
                     f"{row[metric]:.4f}", *(_ci(row, k) for k in TEST_COLUMNS), delta,
                     "-" if row["p_value"] is None else f"{row['p_value']:.3g}",
                     f"{row['ece']:.4f}", f"{row['brier']:.4f}",
                     "-" if row["threshold"] is None else f"{row['threshold']:.3f}",
                     row["run_id"]])
    return _table(header, body, "comparison")


def data_section(item: Assessed) -> str:
    data, ev = item.evaluation.data, item.evaluation
    splits = data.get("splits", {})
    body = [[s, splits.get(s, "-"), data.get("patients", {}).get(s, "-"),
             ", ".join(f"{c} {n}" for c, n in data.get("class_counts", {}).get(s, {}).items())]
            for s in ("train", "val", "test")]
    facts = [
        f"Classes: {', '.join(ev.classes)}; positive class: {data.get('positive_class') or '-'}.",
        f"Split unit: {data.get('split_unit', 'patient')}; patients in two splits: "
        f"{data.get('patient_overlap', 0)}.",
        f"Duplicate image groups: {data.get('duplicate_groups', 0)}, "
        f"{data.get('duplicates_across_splits', 0)} across splits (handled: "
        f"dataset.on_duplicate={ev.on_duplicate}).",
    ]
    return ("<h2 id='data'>Data</h2>" + "".join(f"<p>{html.escape(f)}</p>" for f in facts)
            + _table(["split", "images", "patients", "per class"], body, "splits"))


def protocol_section(cfg: DictConfig, comp: Competition, assessed: Sequence[Assessed],
                     commands: Sequence[str], commit: str) -> str:
    run = assessed[0].candidate.reference_run
    rows = [["metric", f"{comp.metric} ({comp.direction})"],
            ["folds", run.data.params.get("objective.cv_folds", "1")],
            ["operating point", str(cfg.select.operating_point)],
            ["seed", run.data.tags.get(Tag.SEED, "-")],
            ["split seed", run.data.params.get("dataset.seed", "-")],
            ["git commit", commit],
            ["data fingerprint", comp.fingerprint],
            ["bootstrap replicates", str(cfg.select.bootstrap)]]
    listing = "".join(f"<li><code>{html.escape(c)}</code></li>" for c in commands)
    return ("<h2 id='protocol'>Protocol</h2>" + _table(["", "value"], rows, "protocol")
            + f"<p>The studies were produced by:</p><ul id='commands'>{listing}</ul>")


def study_commands(store: Store, names: Sequence[str]) -> list[str]:
    out = []
    for name in names:
        runs = store.search(where(role=Role.STUDY, study_name=name), max_results=20)
        out += sorted({r.data.tags[Tag.COMMAND] for r in runs if r.data.tags.get(Tag.COMMAND)})
    return out


def external_section(store: Store, champion_run_id: str) -> str:
    runs = store.search(where(role=Role.EXTERNAL, model_run_id=champion_run_id), max_results=50)
    if not runs:
        return ("<h2 id='external'>External validation</h2><p>None logged for the champion yet "
                "(python -m pipeline.evaluate --model champion dataset=...).</p>")
    names = [m.removeprefix("test_") for m in TEST_COLUMNS]
    body = [[r.data.tags.get(Tag.DATASET, "?"), int(r.data.metrics.get("n_images", 0)),
             *(f"{r.data.metrics[f'external_{n}']:.3f}" if f"external_{n}" in r.data.metrics
               else "-" for n in names), r.info.run_id] for r in runs]
    return ("<h2 id='external'>External validation</h2>"
            + _table(["dataset", "images", *TEST_COLUMNS.values(), "run"], body, "external-table"))


def write_report(cfg: DictConfig, store: Store, comp: Competition,
                 assessed: Sequence[Assessed], rows: Sequence[dict], sentences: Sequence[str],
                 studies: Sequence[Any], net: Any = None) -> Path:
    """The report's HTML, written to ``report_path``; its path."""
    champion = assessed[0]
    parts = [f"<h1>Selection on {html.escape(comp.dataset)} (data {comp.fingerprint})</h1>",
             data_section(champion),
             protocol_section(cfg, comp, assessed,
                              study_commands(store, [s.study_name for s in studies]), store.commit),
             "<h2 id='comparison-section'>Comparison</h2>",
             comparison_table(rows, comp.metric),
             "".join(f"<p class='sentence'>{html.escape(s)}</p>" for s in sentences),
             "<h2 id='figures'>Figures</h2>",
             _img(figures.roc_figure(assessed), "roc", "test ROC, champion boldest"),
             _img(figures.reliability_figure(assessed), "reliability", "reliability on test")]
    parts += [_img(figures.confusion_figure(item), f"confusion-{item.backbone}",
                   f"confusion matrix of {item.backbone} at its operating point")
              for item in assessed]
    for study in studies:
        data = figures.history_figure(study)
        if data is not None:
            parts.append(_img(data, f"history-{study.study_name}",
                              f"optimisation history of {study.study_name}"))
    if net is not None and champion.evaluation.pixels is not None:
        cams = figures.gallery(champion, net)
        parts.append("<h3 id='gradcam'>Grad-CAM of the champion on test images</h3>"
                     "<div class='gallery'>" + "".join(
                         _img(data, f"gradcam-{i}", caption)
                         for i, (caption, data) in enumerate(cams)) + "</div>")
    parts += ["<h2 id='methods'>Methods</h2>",
              "<p id='methods-paragraph'>"
              + html.escape(methods_paragraph(cfg, comp, assessed, studies)) + "</p>",
              external_section(store, champion.candidate.run_id)]
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Selection "
            f"{html.escape(comp.dataset)}</title><style>{STYLE}</style></head><body>"
            + "".join(parts) + "</body></html>")
    path = report_path(cfg, comp)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


def studies_of(cfg: DictConfig, assessed: Sequence[Assessed]) -> list[Any]:
    """The Optuna studies the competing runs came from (those still in the storage)."""
    import optuna

    url = str(cfg.sweep.get("storage") or f"sqlite:///{state_dir(cfg) / 'optuna.db'}")
    names = sorted({r.data.tags.get(Tag.STUDY_NAME, "") for a in assessed
                    for r in a.candidate.runs} - {""})
    out = []
    for name in names:
        try:
            out.append(optuna.load_study(study_name=name, storage=url))
        except Exception:  # noqa: BLE001 -- a study deleted or stored elsewhere: no history
            continue
    return out


def selection_report(ctx: Context, cfg: DictConfig, comp: Competition,
                     assessed: Sequence[Assessed], rows: Sequence[dict],
                     sentences: Sequence[str]) -> Path:
    """Everything the report needs gathered (studies, the champion's network for Grad-CAM),
    then written; its path."""
    from pipeline.inference.gradcam import rebuild_net

    champion = assessed[0]
    net = None
    if champion.evaluation.model is not None:
        try:
            with as_logged(champion.candidate.run_id):
                net = rebuild_net(champion.evaluation.config, champion.evaluation.model)
        except Exception as exc:  # noqa: BLE001 -- no gallery is better than no report
            print(f"warning: no Grad-CAM gallery ({exc})", flush=True)
    return write_report(cfg, ctx.store, comp, assessed, rows, sentences,
                        studies_of(cfg, assessed), net)
