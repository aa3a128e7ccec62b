"""The selection report: one self-contained HTML file (figures inline, nothing fetched) a paper can
quote: the data, the protocol, the comparison table with what it supports in words, the
per-class results, the limitations, the figures, a methods paragraph, the champion's external
validations and the reporting checklist. Written under ``<state_dir>/reports/`` and logged with
the selection run."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from pipeline.common.urls import redact
from pipeline.config import state_dir
from pipeline.runs.context import Context
from pipeline.selection import figures, sections
from pipeline.selection.assessment import Assessed
from pipeline.selection.checklist import checklist
from pipeline.selection.competition import Competition
from pipeline.selection.facts import Facts
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


def study_commands(store: Store, names: Sequence[str]) -> list[str]:
    out = []
    for name in names:
        runs = store.search(where(role=Role.STUDY, study_name=name), max_results=20)
        # A store written before commands were redacted may still hold a password.
        out += sorted({redact(r.data.tags[Tag.COMMAND]) for r in runs
                       if r.data.tags.get(Tag.COMMAND)})
    return out


def write_report(cfg: DictConfig, store: Store, comp: Competition,
                 assessed: Sequence[Assessed], rows: Sequence[dict], sentences: Sequence[str],
                 facts: Facts, limitations: Sequence[str], studies: Sequence[Any],
                 net: Any = None) -> Path:
    """The report's HTML, written to ``report_path``; its path."""
    champion = assessed[0]
    parts = [f"<h1>Selection on {html.escape(comp.dataset)} (data {comp.fingerprint})</h1>",
             sections.data_section(facts),
             sections.protocol_section(facts, study_commands(
                 store, [s.study_name for s in studies])),
             "<h2 id='comparison-section'>Comparison</h2>",
             f"<p>Test metrics at each model's operating point, as it would be served, with 95% "
             f"{facts.bootstrap_unit}-bootstrap intervals (<span id='n-replicates'>"
             f"{facts.n_replicates}</span> replicates).</p>",
             sections.comparison_table(rows, comp.metric, facts.bootstrap_unit),
             sections.paragraphs(sentences, "sentence"),
             sections.per_class_section(rows, facts.classes),
             sections.limitations_section(limitations),
             "<h2 id='figures'>Figures</h2>",
             _img(figures.roc_figure(assessed), "roc", "test ROC, champion boldest"),
             _img(figures.reliability_figure(assessed), "reliability", "reliability on test")]
    parts += [_img(figures.confusion_figure(item), f"confusion-{item.candidate.key}",
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
              + html.escape(methods_paragraph(facts, assessed, studies)) + "</p>",
              sections.external_section(facts.external),
              sections.checklist_section(checklist(facts, assessed, gallery=net is not None))]
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
                     sentences: Sequence[str], facts: Facts,
                     limitations: Sequence[str]) -> Path:
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
    return write_report(cfg, ctx.store, comp, assessed, rows, sentences, facts, limitations,
                        studies_of(cfg, assessed), net)
