"""Select the champion: rank the competing runs on validation, test each backbone's best once,
log the comparison as one ``role=selection`` run, register the winner as ``champion``."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from pipeline import tracking
from pipeline.data import load_data
from pipeline.selection.comparison import table_row, to_csv, to_markdown
from pipeline.selection.competition import Candidate, Competition, candidates, competition
from pipeline.selection.evaluation import Evaluation, evaluate_run
from pipeline.tracking.logged import open_store
from pipeline.tracking.registry import CHAMPION, register_champion
from pipeline.training.reports import write_reports

Say = Callable[..., None]


def data_overrides(overrides: Sequence[str]) -> list[str]:
    """The command line's ``dataset.*`` overrides: where each run's data is on this machine."""
    return [o for o in overrides if o.lstrip("+~").startswith("dataset.")]


def select_champion(cfg: DictConfig, overrides: Sequence[str] = (), say: Say = print) -> dict:
    """The whole selection; returns the JSON summary ``pipeline.select_best`` prints last."""
    mlflow_client = open_store(cfg, "no runs to compare")
    comp = competition(mlflow_client, cfg, lambda: load_data(cfg).fingerprint)
    ranked = candidates(mlflow_client, comp)
    say(f"{len(ranked)} backbone(s) compete on data {comp.fingerprint} (dataset {comp.dataset}), "
        f"ranked by {comp.metric} ({comp.direction}) on the validation split", flush=True)
    evaluations = {}
    for cand in ranked:
        evaluations[cand.backbone] = evaluate_run(
            mlflow_client, cand.run, cfg, data_overrides(overrides)
        )
        say(f"  {cand.backbone}: run {cand.run_id} {comp.metric}={cand.value:.4f} "
            f"({cand.complete} complete, {cand.pruned} pruned); test_auroc="
            f"{evaluations[cand.backbone].metrics['test_auroc']:.4f}", flush=True)
    rows = [
        table_row(c.backbone, c.run_id, c.complete, c.pruned, comp.metric, c.value,
                  evaluations[c.backbone].metrics, c.run.data.metrics, winner=(i == 0))
        for i, c in enumerate(ranked)
    ]
    winner = ranked[0]
    markdown = to_markdown(rows, comp.metric)
    selection_id = log_selection(mlflow_client, cfg, comp, ranked, evaluations, rows, markdown)
    model_name = str(cfg.select.model_name)
    version = register_champion(mlflow_client, model_name, winner.run, {
        "run_id": winner.run_id, "metric": comp.metric, "value": repr(winner.value),
        "backbone": winner.backbone, "dataset": comp.dataset,
        "data_fingerprint": comp.fingerprint, "selection_run_id": selection_id,
    })
    mlflow_client.set_tag(selection_id, "model_version", version)
    say("\n" + markdown)
    say(f"champion: {winner.backbone} (run {winner.run_id}, {comp.metric}={winner.value:.4f}) "
        f"registered as {model_name} version {version}, alias {CHAMPION}; selection run "
        f"{selection_id}", flush=True)
    return {
        "champion_run_id": winner.run_id, "backbone": winner.backbone, "metric": comp.metric,
        "value": winner.value, "model_name": model_name, "version": version, "table": rows,
    }


def log_selection(
    mlflow_client: Any, cfg: DictConfig, comp: Competition, ranked: Sequence[Candidate],
    evaluations: dict[str, Evaluation], rows: list[dict], markdown: str,
) -> str:
    """One run (``role=selection``): the table as Markdown and CSV, each backbone's test metrics,
    predictions and reports; the winner's test metrics also without a prefix."""
    from mlflow.entities import Metric, Param

    winner = ranked[0]
    run = mlflow_client.create_run(comp.experiment_id, run_name=f"select-{comp.dataset}", tags={
        "role": "selection", "dataset": comp.dataset, "data_fingerprint": comp.fingerprint,
        "select_metric": comp.metric, "champion_run_id": winner.run_id,
        "champion_backbone": winner.backbone, "model_name": str(cfg.select.model_name),
        "git_commit": tracking.git_commit(),
    })
    run_id = run.info.run_id
    status = "FAILED"
    try:
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in evaluations[winner.backbone].metrics.items()]
        for cand in ranked:
            values = {comp.metric: cand.value, **evaluations[cand.backbone].metrics}
            metrics += [Metric(f"{cand.backbone}.{k}", v, now, 0) for k, v in values.items()]
        params = [Param(f"select.{k}", str(v)) for k, v in
                  {"metric": comp.metric, "direction": comp.direction,
                   "fingerprint": comp.fingerprint, "dataset": comp.dataset,
                   "model_name": cfg.select.model_name}.items()]
        params.append(Param("candidates", ",".join(f"{c.backbone}:{c.run_id}" for c in ranked)))
        for i in range(0, len(metrics), 500):
            mlflow_client.log_batch(run_id, metrics=metrics[i : i + 500],
                                    params=params if i == 0 else [], synchronous=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            (out / "comparison.md").write_text(markdown)
            (out / "comparison.csv").write_text(to_csv(rows))
            for backbone, ev in evaluations.items():
                write_reports(out / backbone, ev.probs, ev.target, ev.classes,
                              ev.positive_index, "test_")
                ev.predictions().to_csv(out / backbone / "test_predictions.csv", index=False,
                                        lineterminator="\n")
            mlflow_client.log_artifacts(run_id, tmp)
        status = "FINISHED"
    finally:
        mlflow_client.set_terminated(run_id, status=status)
    return run_id
