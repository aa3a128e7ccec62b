"""Select the champion: rank the competing runs on validation, test each backbone's best once
(with intervals, calibration and paired comparisons), log the comparison as one
``role=selection`` run, register the winner as ``champion`` with its operating point."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from pipeline.common.atomic import file_lock
from pipeline.common.cli import Say
from pipeline.common.faults import fault_point
from pipeline.data.bundle import load_data
from pipeline.runs.context import Context
from pipeline.selection.assessment import assess, indistinct, small_test_warning
from pipeline.selection.comparison import table_row, to_markdown
from pipeline.selection.competition import candidates, competition, search_gain
from pipeline.selection.ensemble import ensemble_of, insert_ranked, register_run
from pipeline.selection.evaluation import evaluate_run
from pipeline.selection.record import log_selection
from pipeline.selection.report import selection_report
from pipeline.tracking.registry import CHAMPION, register_champion
from pipeline.tracking.runs import close_dead_runs
from pipeline.tracking.schema import Tag, VersionTag


def data_overrides(overrides: Sequence[str]) -> list[str]:
    """The command line's ``dataset.*`` overrides: where each run's data is on this machine."""
    return [o for o in overrides if o.lstrip("+~").startswith("dataset.")]


def select_champion(ctx: Context, cfg: DictConfig, overrides: Sequence[str] = (),
                    say: Say = print) -> dict:
    """The whole selection, on the context's store; returns the JSON summary
    ``pipeline.select_best`` prints last."""
    store = ctx.store
    comp = competition(store, cfg, lambda: load_data(cfg).fingerprint)
    if close_dead_runs(store):
        say("closed the run(s) of a selection (or training) whose process died (now KILLED)")
    ranked = candidates(store, comp)
    say(f"{len(ranked)} backbone(s) compete on data {comp.fingerprint} (dataset {comp.dataset}), "
        f"ranked by {comp.metric} ({comp.direction}) on the validation split", flush=True)
    evaluations = {}
    for cand in ranked:
        evaluations[cand.backbone] = evaluate_run(store, cand.run, cfg, data_overrides(overrides))
        fault_point("select_test")
    ensemble = ensemble_of(store, comp, cfg, evaluations, data_overrides(overrides), say)
    if ensemble is not None:
        evaluations[ensemble[0].backbone] = ensemble[1]
        ranked = insert_ranked(ranked, ensemble[0], comp.direction)
    small = small_test_warning(evaluations[ranked[0].backbone])
    if small:
        say(f"warning: {small}", flush=True)
    assessed = assess(cfg, ranked, evaluations)
    for item in assessed:
        auroc, (low, high) = item.test.values["auroc"], item.test.intervals["auroc"]
        say(f"  {item.backbone}: run {item.candidate.run_id} {comp.metric}="
            f"{item.candidate.value:.4f} ({item.candidate.complete} complete, "
            f"{item.candidate.pruned} pruned); test_auroc={auroc:.4f} [{low:.4f}, {high:.4f}]",
            flush=True)
    rows = [table_row(item, comp.metric, winner=(i == 0)) for i, item in enumerate(assessed)]
    operating_point = str(cfg.select.operating_point)
    markdown = to_markdown(rows, comp.metric, operating_point)
    sentences = [_sentence(assessed[0], same) for same in indistinct(assessed)]
    gain = search_gain(store, comp)
    if gain is not None:
        sentences.append(gain.sentence())
    winner = assessed[0]
    selection_id = log_selection(store, cfg, comp, assessed, rows, markdown, sentences)
    model_name = str(cfg.select.model_name)
    tags = {
        VersionTag.RUN_ID: winner.candidate.run_id, VersionTag.METRIC: comp.metric,
        VersionTag.VALUE: repr(winner.candidate.value), VersionTag.BACKBONE: winner.backbone,
        VersionTag.DATASET: comp.dataset, VersionTag.DATA_FINGERPRINT: comp.fingerprint,
        VersionTag.SELECTION_RUN_ID: selection_id, VersionTag.OPERATING_POINT: operating_point,
    }
    if winner.threshold is not None:
        tags[VersionTag.THRESHOLD] = repr(winner.threshold)
    if winner.calibration:
        tags[VersionTag.TEMPERATURE] = repr(winner.calibration["temperature"])
    # Two selections at once on one machine take turns to register: the second finds the
    # version the first made for the same run and points the alias at it again.
    with file_lock(ctx.state_dir / ".registry.lock"):
        model_run = winner.candidate.run
        if model_run is None:  # the ensemble won on validation: its members as one pyfunc model
            model_run = register_run(store, comp, winner.candidate, winner.evaluation)
            tags[VersionTag.RUN_ID] = model_run.info.run_id
            tags[VersionTag.MEMBERS] = winner.candidate.run_id
        version = register_champion(store, model_name, model_run, tags)
    store.log(selection_id, tags={Tag.MODEL_VERSION: version})
    report = selection_report(ctx, cfg, comp, assessed, rows, sentences)
    store.log_artifact(selection_id, report)
    say("\n" + markdown)
    for sentence in sentences:
        say(sentence)
    if winner.calibration:
        cal = winner.calibration
        say(f"calibration of {winner.backbone}: temperature {cal['temperature']:.3f} (fitted on "
            f"validation), test ECE {cal['ece_before']:.4f} before, {cal['ece_after']:.4f} after")
    say(f"champion: {winner.backbone} (run {winner.candidate.run_id}, {comp.metric}="
        f"{winner.candidate.value:.4f}) registered as {model_name} version {version}, alias "
        f"{CHAMPION}; selection run {selection_id}", flush=True)
    say(f"report: {report}", flush=True)
    return {
        "champion_run_id": model_run.info.run_id, "backbone": winner.backbone,
        "metric": comp.metric, "value": winner.candidate.value, "model_name": model_name,
        "version": version, "table": rows,
        "cv_folds": int(winner.candidate.reference_run.data.params.get("objective.cv_folds", 1)),
        "operating_point": operating_point,
    }


def _sentence(champion, same) -> str:
    return (f"{champion.backbone} and {same.backbone} cannot be told apart on this test set "
            f"(p = {same.versus_champion.p_value:.2g}, {same.versus_champion.test})")
