"""One study across backbones: conditional freeze depths, the papers' recipes first, a table row
per backbone; and studies that stop when the search stops paying."""

from __future__ import annotations

import json

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from pipeline.config import compose
from pipeline.models.catalog import stage_count
from pipeline.study.baselines import load_recipes
from pipeline.study.space import backbone_option, load_space
from pipeline.tracking.store import tracking_uri
from tests.sweep_store import run_module, run_sweep, study_of, trial_runs

pytestmark = pytest.mark.usefixtures("one_torch_thread")
JOINT = ("sweep.space=backbones", "sweep.backbones=[resnet18,mobilenet_v2]",
         "sweep.sampler=random", "sweep.pruner=none", "trainer.max_epochs=1",
         "tracking.log_model=true", "dataset.num_classes=2")


@pytest.mark.slow
def test_each_trials_freeze_depth_ranges_over_its_own_backbones_stages():
    cfg = compose(["sweep.space=backbones"])
    space = load_space("backbones", cfg)
    assert space.backbones[:5] == ["xception", "vgg19", "resnet50", "densenet121",
                                   "inception_v3"]
    assert list(space.params)[0] == "backbone"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {}
    for _ in range(60):
        trial = study.ask()
        values = space.sample(trial, cfg)
        high = stage_count(backbone_option(values["backbone"]))
        assert 0 <= values["backbone.freeze_depth"] <= high
        seen[values["backbone"]] = max(seen.get(values["backbone"], 0),
                                       values["backbone.freeze_depth"])
        study.tell(trial, 0.5)
    assert seen["resnet50_resnet152v2_concat"] == 6  # its own 6 stages, not the others' 5
    assert len(seen) == 9


@pytest.mark.slow
def test_a_joint_study_starts_from_the_recipes_and_selects_one_row_per_backbone(tiny_overrides):
    overrides = tiny_overrides(*JOINT, "sweep.n_trials=5")
    cfg = compose(overrides)
    summary = run_sweep(cfg, overrides, echo=False)
    assert summary["study_name"].startswith("synthetic-all-")
    study = study_of(overrides)
    trials = sorted(study.trials, key=lambda t: t.number)
    recipes = [r for r in load_recipes() if r.backbone in ("resnet18", "mobilenet_v2")]
    assert recipes  # paper 003's MobileNet
    for trial, recipe in zip(trials, recipes, strict=False):  # the first trials, in file order
        assert trial.user_attrs["baseline"] == recipe.paper
        assert trial.params["backbone"] == recipe.backbone
        assert trial.params["optimizer.lr"] == pytest.approx(recipe.lr)
    backbones = {t.params["backbone"] for t in trials}
    assert backbones == {"resnet18", "mobilenet_v2"}
    runs = {int(r.data.tags["optuna_trial"]): r for r in trial_runs(cfg, "synthetic-all")}
    for trial in trials:
        run = runs[trial.number]
        assert run.data.tags["backbone"] == trial.params["backbone"]  # an ordinary child run
        if trial.user_attrs.get("baseline"):
            recipe = recipes[trial.number]
            assert run.data.tags["baseline"] == recipe.paper
            assert run.data.params["head.name"] == recipe.head
            assert run.data.params["dataset.batch_size"] == str(recipe.batch_size)
            assert run.data.params["backbone.freeze_depth"] == "0"  # random weights: unfrozen
            assert run.data.params["trainer.max_epochs"] == "1"  # capped by the budget
        else:
            assert "baseline" not in run.data.tags
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best_recipe = max(t.value for t in complete if t.user_attrs.get("baseline"))
    best_searched = max(t.value for t in complete if not t.user_attrs.get("baseline"))
    parent = MlflowClient(tracking_uri(cfg)).get_run(summary["parent_run_id"])
    assert parent.data.metrics["search_gain"] == pytest.approx(best_searched - best_recipe)
    proc = run_module("pipeline.select_best", *overrides, "select.bootstrap=100")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    table = summary["table"]
    assert sorted(row["backbone"] for row in table if row["kind"] == "backbone") == [
        "mobilenet_v2", "resnet18"]
    assert any(row["recipe"] for row in table)  # the best recipe trial, tested
    assert ("search gain over the papers' recipes on validation (optimistic: the same validation "
            f"scores chose the searched run): {best_searched - best_recipe:+.3f} val_auroc"
            ) in proc.stdout
    gain = summary["search_gain_test"]
    assert f"search gain over the papers' recipes on test: {gain['delta_auroc']:+.3f} [" in (
        proc.stdout)


@pytest.mark.slow
def test_patience_ends_the_study_with_its_reason(tiny_overrides, monkeypatch):
    overrides = tiny_overrides("sweep.n_trials=8", "sweep.pruner=none", "trainer.max_epochs=1",
                               "tracking.log_model=false", "sweep.patience=2",
                               "sweep.min_delta=1.0")  # nothing improves by a whole AUROC
    cfg = compose(overrides)
    summary = run_sweep(cfg, overrides, echo=False)
    study = study_of(overrides)
    assert len(study.trials) == 3  # the first sets the best, two more fail to beat it
    assert summary["stop_reason"].startswith("2 finished trials in a row did not improve")
    parent = MlflowClient(tracking_uri(cfg)).get_run(summary["parent_run_id"])
    assert parent.data.tags["stop_reason"] == summary["stop_reason"]
    assert parent.info.status == "FINISHED"
    # Another worker (or a resume) reads the reason from the study and stops at once.
    again = run_sweep(cfg, overrides, echo=False)
    assert again["stop_reason"] == summary["stop_reason"] and len(study_of(overrides).trials) == 3


def test_a_target_ends_the_study_once_reached(tiny_overrides):
    overrides = tiny_overrides("sweep.n_trials=6", "sweep.pruner=none", "trainer.max_epochs=1",
                               "tracking.log_model=false", "sweep.target=0.0")
    cfg = compose(overrides)
    summary = run_sweep(cfg, overrides, echo=False)
    assert [t.state for t in study_of(overrides).trials] == [TrialState.COMPLETE]
    assert summary["stop_reason"].startswith("the objective reached sweep.target=0.0")
