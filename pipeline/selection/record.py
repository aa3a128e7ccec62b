"""The selection as one MLflow run (``role=selection``): the table as Markdown and CSV, each
backbone's test metrics with their intervals and comparison, predictions, reports, and the
champion's reliability diagram."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from omegaconf import DictConfig

from pipeline.common.faults import fault_point
from pipeline.evidence.calibration import reliability_diagram
from pipeline.evidence.metrics import nll
from pipeline.selection.assessment import Assessed
from pipeline.selection.comparison import to_csv
from pipeline.selection.competition import Competition
from pipeline.tracking.schema import Role
from pipeline.tracking.search import where
from pipeline.tracking.store import Store
from pipeline.training.reports import write_reports


def selection_metrics(item: Assessed, metric: str) -> dict[str, float]:
    """One model's logged values: its selection score and its drop on test, test metrics and
    their interval bounds (``test_<m>_ci_low``/``_high``), per class ones
    (``test_<class>_<m>``), the comparison with the champion (raw and Holm-adjusted p),
    calibration."""
    values = {metric: item.candidate.value, "val_minus_test": item.candidate.value
              - item.test_value, "test_loss": nll(item.served.probs, item.evaluation.target)}
    results = {"": item.test, **{f"{c}_": u for c, u in item.per_class.items()}}
    for prefix, result in results.items():
        for name, value in result.values.items():
            low, high = result.intervals[name]
            values.update({f"test_{prefix}{name}": value, f"test_{prefix}{name}_ci_low": low,
                           f"test_{prefix}{name}_ci_high": high})
    values.update({"ece": item.ece, "ece_uncalibrated": item.ece_before, "brier": item.brier,
                   "threshold": item.threshold, "temperature": item.temperature,
                   "val_nll_before": item.served.val_nll_before,
                   "val_nll_after": item.served.val_nll_after,
                   "degenerate": float(bool(item.degenerate))})
    if item.versus_champion is not None:
        versus = item.versus_champion
        values.update({"delta_auroc": versus.delta_auroc, "delta_auroc_ci_low": versus.delta_ci[0],
                       "delta_auroc_ci_high": versus.delta_ci[1], "p_value": versus.p_value,
                       "p_holm": item.p_holm})
    return {k: float(v) for k, v in values.items() if v is not None}


def test_uses(store: Store, comp: Competition) -> int:
    """Selection runs on this data, each of which tested its split before its run was opened:
    this one is the next. One killed or failed half way counts too (its test results may have
    been printed and seen): a use of the test split is a use, however the selection ended."""
    return store.count(where(role=Role.SELECTION, data_fingerprint=comp.fingerprint)) + 1


@contextlib.contextmanager
def selection_run(
    store: Store, cfg: DictConfig, comp: Competition, assessed: Sequence[Assessed],
    rows: list[dict], markdown: str, sentences: Sequence[str], uses: int,
    extra: dict[str, float],
) -> Iterator[str]:
    """One run, its id yielded: the champion's values unprefixed, every model's as
    ``<backbone>.<name>``, and ``extra`` (the replicate count, the search gain on test). It stays
    open while the caller registers the champion and logs the report, so a selection that dies
    before then is never FINISHED (though counted by ``test_uses``: it had tested the split)."""
    winner = assessed[0]
    with store.open_run(
        Role.SELECTION, name=f"select-{comp.dataset}", dataset=comp.dataset,
        data_fingerprint=comp.fingerprint, select_metric=comp.metric,
        champion_run_id=winner.candidate.run_id, champion_backbone=winner.backbone,
        model_name=str(cfg.select.model_name), test_uses=str(uses),
    ) as run:
        metrics = {**selection_metrics(winner, comp.metric), **extra, "test_uses": uses}
        for item in assessed:
            metrics.update({f"{item.candidate.key}.{k}": v
                            for k, v in selection_metrics(item, comp.metric).items()})
        params = {f"select.{k}": str(v) for k, v in
                  {"metric": comp.metric, "direction": comp.direction,
                   "fingerprint": comp.fingerprint, "dataset": comp.dataset,
                   "model_name": cfg.select.model_name, "bootstrap": cfg.select.bootstrap,
                   "operating_point": cfg.select.operating_point,
                   "calibrate": cfg.select.calibrate}.items()}
        params["candidates"] = ",".join(f"{a.candidate.key}:{a.candidate.run_id}"
                                        for a in assessed)
        store.log(run.id, metrics=metrics, params=params)
        fault_point("select_test")  # half written: its values logged, its artifacts not
        with tempfile.TemporaryDirectory() as tmp:
            write_artifacts(Path(tmp), assessed, rows, markdown, sentences)
            store.log_artifacts(run.id, tmp)
        yield run.id


def write_artifacts(out: Path, assessed: Sequence[Assessed], rows: list[dict], markdown: str,
                    sentences: Sequence[str]) -> None:
    (out / "comparison.md").write_text(markdown + "".join(f"\n{s}\n" for s in sentences))
    (out / "comparison.csv").write_text(to_csv(rows))
    for item in assessed:
        ev, served = item.evaluation, item.served
        write_reports(out / item.candidate.key, served.probs, ev.target, ev.classes,
                      ev.positive_index, "test_", served.labels)
        ev.predictions(served.probs, served.labels).to_csv(
            out / item.candidate.key / "test_predictions.csv", index=False, lineterminator="\n")
    champion = assessed[0]
    curves = {"test, unscaled": (champion.evaluation.probs, champion.evaluation.target)}
    if champion.temperature is not None:
        curves[f"test, temperature {champion.temperature:.2f}"] = (
            champion.served.probs, champion.evaluation.target)
    reliability_diagram(out / "reliability_diagram.png", curves,
                        champion.evaluation.positive_index,
                        f"{champion.backbone}: reliability on test")
