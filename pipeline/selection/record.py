"""The selection as one MLflow run (``role=selection``): the table as Markdown and CSV, each
backbone's test metrics with their intervals and comparison, predictions, reports, and the
champion's reliability diagram."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from pipeline.evidence.calibration import reliability_diagram, scaled
from pipeline.selection.assessment import Assessed
from pipeline.selection.comparison import to_csv
from pipeline.selection.competition import Competition
from pipeline.tracking.schema import Role
from pipeline.tracking.store import Store
from pipeline.training.reports import write_reports


def selection_metrics(item: Assessed, metric: str) -> dict[str, float]:
    """One backbone's logged values: its selection score, test metrics and their interval
    bounds (``test_<m>_ci_low``/``_high``), the comparison with the champion, calibration."""
    values = {metric: item.candidate.value, **item.evaluation.metrics}
    for name, value in item.test.values.items():
        low, high = item.test.intervals[name]
        values.update({f"test_{name}": value, f"test_{name}_ci_low": low,
                       f"test_{name}_ci_high": high})
    values.update({"ece": item.ece, "brier": item.brier})
    if item.threshold is not None:
        values["threshold"] = item.threshold
    if item.versus_champion is not None:
        versus = item.versus_champion
        values.update({"delta_auroc": versus.delta_auroc, "delta_auroc_ci_low": versus.delta_ci[0],
                       "delta_auroc_ci_high": versus.delta_ci[1], "p_value": versus.p_value})
    values.update(item.calibration)
    return {k: float(v) for k, v in values.items() if v is not None}


def log_selection(
    store: Store, cfg: DictConfig, comp: Competition, assessed: Sequence[Assessed],
    rows: list[dict], markdown: str, sentences: Sequence[str],
) -> str:
    """One run: the champion's values unprefixed, every backbone's as ``<backbone>.<name>``."""
    winner = assessed[0]
    with store.open_run(
        Role.SELECTION, name=f"select-{comp.dataset}", dataset=comp.dataset,
        data_fingerprint=comp.fingerprint, select_metric=comp.metric,
        champion_run_id=winner.candidate.run_id, champion_backbone=winner.backbone,
        model_name=str(cfg.select.model_name),
    ) as run:
        metrics = selection_metrics(winner, comp.metric)
        for item in assessed:
            metrics.update({f"{item.backbone}.{k}": v
                            for k, v in selection_metrics(item, comp.metric).items()})
        params = {f"select.{k}": str(v) for k, v in
                  {"metric": comp.metric, "direction": comp.direction,
                   "fingerprint": comp.fingerprint, "dataset": comp.dataset,
                   "model_name": cfg.select.model_name, "bootstrap": cfg.select.bootstrap,
                   "operating_point": cfg.select.operating_point,
                   "calibrate": cfg.select.calibrate}.items()}
        params["candidates"] = ",".join(f"{a.backbone}:{a.candidate.run_id}" for a in assessed)
        store.log(run.id, metrics=metrics, params=params)
        with tempfile.TemporaryDirectory() as tmp:
            write_artifacts(Path(tmp), assessed, rows, markdown, sentences)
            store.log_artifacts(run.id, tmp)
    return run.id


def write_artifacts(out: Path, assessed: Sequence[Assessed], rows: list[dict], markdown: str,
                    sentences: Sequence[str]) -> None:
    (out / "comparison.md").write_text(markdown + "".join(f"\n{s}\n" for s in sentences))
    (out / "comparison.csv").write_text(to_csv(rows))
    for item in assessed:
        ev = item.evaluation
        write_reports(out / item.backbone, ev.probs, ev.target, ev.classes, ev.positive_index,
                      "test_")
        ev.predictions().to_csv(out / item.backbone / "test_predictions.csv", index=False,
                                lineterminator="\n")
    champion = assessed[0].evaluation
    curves = {"test": (champion.probs, champion.target)}
    if assessed[0].calibration:
        t = assessed[0].calibration["temperature"]
        curves[f"test, temperature {t:.2f}"] = (scaled(champion.probs, t), champion.target)
    reliability_diagram(out / "reliability_diagram.png", curves, champion.positive_index,
                        f"{assessed[0].backbone}: reliability on test")
