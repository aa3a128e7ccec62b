"""A study knows what it searches: other data or other trial settings never resume or join it."""

from __future__ import annotations

import sys

import pytest
from mlflow import MlflowClient

from pipeline import sweep as sweep_command
from pipeline.common.cli import run
from pipeline.config import compose
from pipeline.study.identity import ATTR
from pipeline.study.stopping import search_stopped, tell_workers
from pipeline.tracking.store import tracking_uri
from tests.data.xray_files import write_class_tree
from tests.sweep_store import run_sweep, study_of, trial_runs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUICK = ("tracking.log_model=false", "sweep.n_trials=1", "sweep.pruner=none",
         "sweep.baselines=none", "trainer.max_epochs=1")


def _folder_overrides(state_dir, root) -> list[str]:
    return [f"state_dir={state_dir}", "backbone=resnet18", "trainer.progress_bar=false",
            "dataset=imagefolder", f"dataset.root={root}", "dataset.image_size=32",
            "dataset.batch_size=8", "backbone.pretrained=false", *QUICK]


def test_a_sweep_on_other_data_trains_its_own_trials(state_dir, tmp_path):
    """Folder A, then folder B (other patients' images under the same names): B's sweep trains
    its own trial in a study of its own instead of reporting A's; A's study is resumed by A."""
    write_class_tree(tmp_path / "a", {"covid": 12, "normal": 12})
    write_class_tree(tmp_path / "b", {"covid": 12, "normal": 12}, start_seed=100)
    on_a, on_b = (_folder_overrides(state_dir, tmp_path / x) for x in "ab")
    first = run_sweep(compose(on_a), on_a, echo=False)
    second = run_sweep(compose(on_b), on_b, echo=False)

    assert first["study_name"].startswith("imagefolder-resnet18-")
    assert second["study_name"].startswith("imagefolder-resnet18-")
    assert second["study_name"] != first["study_name"]
    assert second["n_complete"] == 1 and second["best_run_id"] != first["best_run_id"]
    client = MlflowClient(tracking_uri(compose(on_b)))
    a_fp = client.get_run(first["best_run_id"]).data.tags["data_fingerprint"]
    b_fp = client.get_run(second["best_run_id"]).data.tags["data_fingerprint"]
    assert a_fp != b_fp and second["study_name"].split("-")[2] == b_fp[:8]
    for summary in (first, second):
        assert len(trial_runs(compose(on_a), summary["study_name"])) == 1
    # The same command on A again resumes A's study: nothing trained, A's best.
    again = run_sweep(compose(on_a), on_a, echo=False)
    assert again["study_name"] == first["study_name"]
    assert again["best_run_id"] == first["best_run_id"] and len(study_of(on_a).trials) == 1


def test_another_image_size_is_another_study(tiny_overrides):
    at_32 = tiny_overrides("dataset.image_size=32")
    study = study_of(at_32)
    study.tell(study.ask(), 0.7)
    other = study_of(tiny_overrides("dataset.image_size=40"))
    assert other.study_name != study.study_name and other.trials == []
    assert other.user_attrs[ATTR]["settings"]["dataset.image_size"] == "40"
    assert [t.value for t in study_of(at_32).trials] == [0.7]  # the first is kept as it was


def test_a_named_study_of_other_settings_is_refused_in_one_line(tiny_overrides, monkeypatch,
                                                                capsys):
    named = tiny_overrides(*QUICK, "sweep.study_name=mine")
    study = study_of(named)
    study.tell(study.ask(), 0.7)
    stored = study.user_attrs[ATTR]
    monkeypatch.setattr(sys, "argv", ["pipeline.sweep", *named, "dataset.image_size=40"])
    with pytest.raises(SystemExit) as exit_:
        run(sweep_command.main)
    assert exit_.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines()
             if " INFO mlflow." not in line]  # MLflow's own note on creating its fresh store
    assert len(lines) == 1 and lines[0].startswith("error: ")
    err = lines[0]
    assert "study 'mine'" in err and "dataset.image_size: 32 there, 40 here" in err
    assert "sweep.study_name" in err
    kept = study_of(named)  # nothing stored is lost
    assert [t.value for t in kept.trials] == [0.7] and kept.user_attrs[ATTR] == stored
    assert trial_runs(compose(named), "mine") == []  # nothing trained


def test_a_stop_reason_holds_only_under_the_settings_that_reached_it(tiny_overrides):
    overrides = tiny_overrides("sweep.patience=2", "sweep.min_delta=1.0")
    study = study_of(overrides)
    for value in (0.5, 0.6, 0.7):
        study.tell(study.ask(), value)
    patient = compose(overrides)
    reason = search_stopped(patient, study)
    assert reason and reason.startswith("2 finished trials in a row did not improve")
    tell_workers(patient, study, reason)
    assert search_stopped(patient, study) == reason  # every worker with these settings stops
    assert search_stopped(compose([*overrides, "sweep.patience=5"]), study) is None
    assert search_stopped(compose([*overrides, "sweep.patience=null"]), study) is None
