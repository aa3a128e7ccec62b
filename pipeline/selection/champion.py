"""Select the champion: rank the competing runs on validation, test each backbone's best (and the
best recipe's) once as it would be served (calibrated, at its operating point), compare each
with the champion on the same test patients, log the comparison as one ``role=selection`` run
and register the winner as ``champion`` with its calibration and operating point."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from pipeline.common.atomic import file_lock
from pipeline.common.cli import Say
from pipeline.common.faults import barrier
from pipeline.data.bundle import load_data
from pipeline.runs.context import Context
from pipeline.selection.assessment import Assessed, assess, serve, small_test_warning
from pipeline.selection.claims import sentences as claims
from pipeline.selection.comparison import table_row, to_markdown
from pipeline.selection.competition import Candidate, Competition, candidates, competition
from pipeline.selection.ensemble import ensemble_of, insert_ranked, register_run
from pipeline.selection.evaluation import Evaluation, evaluate_run
from pipeline.selection.facts import gather
from pipeline.selection.limitations import limitations
from pipeline.selection.recipes import Recipes, recipe_row, recipes
from pipeline.selection.record import selection_run, test_uses
from pipeline.selection.report import selection_report
from pipeline.selection.statistics import paired
from pipeline.selection.summary import calibration_line, summary, version_tags
from pipeline.tracking.registry import CHAMPION, register_champion
from pipeline.tracking.runs import close_dead_runs
from pipeline.tracking.schema import Tag, VersionTag
from pipeline.tracking.store import Store


def data_overrides(overrides: Sequence[str]) -> list[str]:
    """The command line's ``dataset.*`` overrides: where each run's data is on this machine."""
    return [o for o in overrides if o.lstrip("+~").startswith("dataset.")]


def contenders(store: Store, comp: Competition, cfg: DictConfig, overrides: Sequence[str],
               say: Say) -> tuple[list[Candidate], dict[str, Evaluation], Recipes | None]:
    """The rows (each backbone's best, the ensemble, the best recipe) and their evaluations."""
    ranked = candidates(store, comp)
    say(f"{len(ranked)} backbone(s) compete on data {comp.fingerprint} (dataset {comp.dataset}), "
        f"ranked by {comp.metric} ({comp.direction}) on the validation split", flush=True)
    local = data_overrides(overrides)
    evaluations = {}
    for cand in ranked:
        evaluations[cand.backbone] = evaluate_run(store, cand.run, cfg, local)
    ensemble = ensemble_of(store, comp, cfg, evaluations, local, say)
    if ensemble is not None:
        evaluations[ensemble[0].backbone] = ensemble[1]
        ranked = insert_ranked(ranked, ensemble[0], comp.direction)
    rec = recipes(store, comp)
    row = recipe_row(store, comp, rec, ranked) if rec is not None else None
    if row is not None:
        evaluations[row.backbone] = evaluate_run(store, row.run, cfg, local)
        ranked.append(row)
    return ranked, evaluations, rec


def test_gain(rec: Recipes, assessed: Sequence[Assessed], cfg: DictConfig,
              overrides: Sequence[str], store: Store) -> None:
    """The search gain on test: the best searched run against the best recipe run, both served
    as the rows are, paired on the same test patients and replicates."""
    by_run = {a.evaluation.run_id: a.served.probs for a in assessed}
    champion = assessed[0].evaluation
    probs = []
    for run in (rec.searched, rec.baseline):
        if run.info.run_id not in by_run:
            ev = evaluate_run(store, run, cfg, data_overrides(overrides))
            by_run[run.info.run_id] = serve(ev, bool(cfg.select.calibrate),
                                            str(cfg.select.operating_point)).probs
        probs.append(by_run[run.info.run_id])
    unit = "patient" if champion.data.get("split_unit", "patient") == "patient" else "image"
    rec.test = paired(probs[0], probs[1], champion.target, champion.positive_index,
                      int(cfg.select.bootstrap), champion.patients, int(cfg.seed), unit)


def select_champion(ctx: Context, cfg: DictConfig, overrides: Sequence[str] = (),
                    say: Say = print) -> dict:
    """The whole selection, on the context's store; returns the JSON summary
    ``pipeline.select_best`` prints last."""
    store = ctx.store
    comp = competition(store, cfg, lambda: load_data(cfg).fingerprint)
    if close_dead_runs(store):
        say("closed the run(s) of a selection (or training) whose process died (now KILLED)")
    ranked, evaluations, rec = contenders(store, comp, cfg, overrides, say)
    small = small_test_warning(evaluations[ranked[0].backbone])
    if small:
        say(f"warning: {small}", flush=True)
    assessed, samples = assess(cfg, ranked, evaluations)
    for item in assessed:
        auroc, (low, high) = item.test.values["auroc"], item.test.intervals["auroc"]
        say(f"  {item.backbone}: run {item.candidate.run_id} {comp.metric}="
            f"{item.candidate.value:.4f} ({item.candidate.complete} complete, "
            f"{item.candidate.pruned} pruned, {item.candidate.failed} failed); test_auroc="
            f"{auroc:.4f} [{low:.4f}, {high:.4f}]", flush=True)
    if rec is not None:
        test_gain(rec, assessed, cfg, overrides, store)
    uses = test_uses(store, comp)
    winner = assessed[0]
    rows = [table_row(item, comp.metric, winner=(i == 0)) for i, item in enumerate(assessed)]
    operating_point = str(cfg.select.operating_point)
    markdown = to_markdown(rows, comp.metric, operating_point, samples.unit, len(samples))
    sentences = claims(assessed, rec, uses)
    facts = gather(store, cfg, comp, assessed, samples, uses,
                   winner.candidate.run.info.run_id if winner.candidate.run else None)
    limits = limitations(facts, assessed)
    extra = {"n_replicates": float(len(samples))}
    if rec is not None and rec.test is not None:
        extra.update({"search_gain_test": rec.test.delta_auroc,
                      "search_gain_test_ci_low": rec.test.delta_ci[0],
                      "search_gain_test_ci_high": rec.test.delta_ci[1],
                      "search_gain_test_p_value": rec.test.p_value})
    with selection_run(store, cfg, comp, assessed, rows, markdown,
                       [*sentences, *(f"Limitation: {x}" for x in limits)], uses,
                       extra) as selection_id:
        model_name = str(cfg.select.model_name)
        tags = version_tags(winner, comp, selection_id, operating_point)
        # Two selections at once on one machine take turns to register: the second finds the
        # version the first made for the same run and points the alias at it again.
        barrier("registry_lock")
        with file_lock(ctx.state_dir / ".registry.lock"):
            model_run = winner.candidate.run
            if model_run is None:  # the ensemble won on validation: its members as one model
                model_run = register_run(store, comp, winner.candidate, winner.evaluation)
                tags[VersionTag.RUN_ID] = model_run.info.run_id
                tags[VersionTag.MEMBERS] = winner.candidate.run_id
            version = register_champion(store, model_name, model_run, tags)
        store.log(selection_id, tags={Tag.MODEL_VERSION: version})
        report = selection_report(ctx, cfg, comp, assessed, rows, sentences, facts, limits)
        store.log_artifact(selection_id, report)
    say("\n" + markdown)
    for sentence in sentences:
        say(sentence)
    if winner.temperature is not None:
        say(calibration_line(winner))
    say("limitations:\n" + "\n".join(f"- {line}" for line in limits) if limits else
        "limitations: none found")
    say(f"champion: {winner.backbone} (run {winner.candidate.run_id}, {comp.metric}="
        f"{winner.candidate.value:.4f}) registered as {model_name} version {version}, alias "
        f"{CHAMPION}; selection run {selection_id}", flush=True)
    say(f"report: {report}", flush=True)
    return summary(winner, model_run, comp, model_name, version, rows, samples, uses, rec,
                   limits, operating_point)
