"""Re-running a logged trial: the same metrics on CPU, and one-line refusals."""

from __future__ import annotations

import json
import math
import os

import pandas as pd
import pytest
from omegaconf import OmegaConf

from pipeline.common.errors import ConfigError, DataError, PipelineError
from pipeline.config import compose
from pipeline.data.bundle import load_data
from pipeline.rerun import main
from pipeline.runs.rerun import check_data, compare_metrics, data_differences
from pipeline.tracking.logged import apply_overrides, local_config, read_logged
from pipeline.tracking.schema import Role, Tag
from tests.sweep_store import run_module, sweep_store

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return sweep_store(tmp_path_factory.mktemp("sweep"))


def reruns_of(store, run_id: str) -> list:
    return store.client.search_runs(
        [store.experiment_id], f"tags.role = 'rerun' AND tags.rerun_of = '{run_id}'")


@pytest.mark.slow
def test_a_rerun_on_cpu_repeats_every_logged_metric_exactly(store):
    original_id = store.trials["mobilenet_v2"][0]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["OMP_NUM_THREADS"] = "1"  # the trial trained on one thread: CPU sums depend on it
    proc = run_module("pipeline.rerun", original_id, store.overrides[0], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(last) == {"run_id", "rerun_of", "max_abs_diff"}
    assert last["rerun_of"] == original_id and last["max_abs_diff"] == 0.0

    original = store.client.get_run(original_id)
    again = store.client.get_run(last["run_id"])
    assert again.data.tags["role"] == "rerun" and again.data.tags["rerun_of"] == original_id
    assert again.info.status == "FINISHED"
    assert again.data.params == original.data.params
    # Every metric is repeated; only the sweep's objective (a trial's, not a re-run's) is not
    # logged again, and it is the repeated run's val_auroc.
    trial_metrics = dict(original.data.metrics)
    assert trial_metrics.pop("objective") == again.data.metrics["best_val_auroc"]
    assert again.data.metrics == trial_metrics
    assert "val_auroc" in again.data.metrics
    table = proc.stdout.splitlines()
    for name, value in trial_metrics.items():
        line = next(ln for ln in table if ln.split()[:1] == [name])
        assert line.split()[1] == line.split()[2] == f"{value:.12g}" and line.split()[3] == "0"
    objective = next(ln for ln in table if ln.split()[:1] == ["objective"]).split()
    assert objective[1:] == [f"{original.data.metrics['objective']:.12g}", "-", "-"]  # listed


def test_an_unknown_run_id_is_named(store):
    with pytest.raises(PipelineError, match="run '0123abcd' is not in the MLflow store"):
        main(["0123abcd", store.overrides[0]])


def test_the_run_id_comes_first():
    for argv in ([], ["state_dir=/tmp/x"], ["--help"]):
        with pytest.raises(ConfigError, match="run id to re-run comes first"):
            main(argv)


def test_other_data_on_disk_stops_the_rerun_saying_what_differs(store):
    run_id = store.trials["resnet18"][1]  # [0] has a decoy re-run in the store
    with pytest.raises(DataError) as err:
        main([run_id, store.overrides[0], "dataset.num_images=80"])
    message = str(err.value)
    assert "\n" not in message and store.fingerprint in message
    assert "image(s) gone" in message and "rerun.allow_data_change=true" in message
    assert reruns_of(store, run_id) == []  # nothing was trained

    # Allowed: the check lets it through (and the re-run is tagged data_changed).
    run = store.client.get_run(run_id)
    other = load_data(compose([*store.overrides, "dataset.num_images=80"]))
    assert check_data(store.tracking, run, store.cfg, other, allow_change=True) is False
    assert check_data(store.tracking, run, store.cfg, load_data(store.cfg), False) is True


def test_a_logged_config_takes_key_overrides_but_not_a_new_group(store):
    with pytest.raises(ConfigError, match="would replace the group backbone"):
        main([store.trials["resnet18"][0], store.overrides[0], "backbone=resnet50"])
    cfg = OmegaConf.create({"trainer": {"max_epochs": 2}, "x": 1})
    apply_overrides(cfg, ["trainer.max_epochs=3", "+trainer.extra=[1,2]", "~x", "++y=null"])
    assert OmegaConf.to_container(cfg) == {"trainer": {"max_epochs": 3, "extra": [1, 2]},
                                           "y": None}
    with pytest.raises(ConfigError, match="has no key trainer.nope"):
        apply_overrides(cfg, ["trainer.nope=1"])
    with pytest.raises(ConfigError, match="bad override"):
        apply_overrides(cfg, ["trainer.max_epochs"])


def test_a_logged_config_is_used_as_logged_and_a_key_it_lacks_is_named(store, tmp_path):
    original = store.client.get_run(store.trials["resnet18"][1])
    logged = read_logged(store.tracking, original)
    local = local_config(logged, compose([f"state_dir={tmp_path}"]), ["trainer.max_epochs=3"])
    assert local.state_dir == str(tmp_path) and local.trainer.max_epochs == 3
    expected = OmegaConf.to_container(logged.config)
    got = OmegaConf.to_container(local)
    for key in ("state_dir", "tracking", "trainer"):
        expected.pop(key), got.pop(key)
    assert got == expected  # every other key as logged, nothing filled in from conf/

    # A run logged before the objective group existed: a re-run names its keys, in one line.
    old = OmegaConf.to_container(logged.config)
    del old["objective"]
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(old))
    tags = {key: original.data.tags[key] for key in (
        Tag.BACKBONE, Tag.DATASET, Tag.DATA_FINGERPRINT, Tag.IMAGE_SIZE, Tag.SEED)}
    with store.tracking.open_run(Role.TRAIN, **tags) as run:
        store.tracking.log_artifacts(run.id, tmp_path)
    with pytest.raises(ConfigError) as err:
        main([run.id, store.overrides[0]])
    message = str(err.value)
    assert "\n" not in message and "logged config has no objective.metric" in message
    assert "which this version reads" in message and "+<key>=<value>" in message
    assert reruns_of(store, run.id) == []  # said before anything was trained


@pytest.mark.slow
def test_a_logged_target_outside_the_list_is_refused_naming_the_key(store, tmp_path):
    """A config.yaml written into the store by someone else: its head builds a callable that
    would create a file. The re-run (and anything else reading it) refuses it, runs nothing."""
    original = store.client.get_run(store.trials["resnet18"][1])
    crafted = OmegaConf.to_container(read_logged(store.tracking, original).config)
    planted = tmp_path / "planted"
    crafted["head"]["dropout"] = {"_target_": "pathlib.Path.touch", "_args_": [str(planted)]}
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(crafted))
    tags = {key: original.data.tags[key] for key in (
        Tag.BACKBONE, Tag.DATASET, Tag.DATA_FINGERPRINT, Tag.IMAGE_SIZE, Tag.SEED)}
    with store.tracking.open_run(Role.TRAIN, **tags) as run:
        store.tracking.log_artifact(run.id, tmp_path / "config.yaml")
    proc = run_module("pipeline.rerun", run.id, store.overrides[0])
    assert proc.returncode == 2, proc.stderr[-3000:]
    error = proc.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: "), proc.stderr
    assert "head.dropout._target_='pathlib.Path.touch'" in error[0]
    assert f"run {run.id}'s logged config.yaml" in error[0]
    assert not planted.exists() and reruns_of(store, run.id) == []
    with pytest.raises(ConfigError, match=r"head\.dropout\._target_"):
        read_logged(store.tracking, run.id)  # predict, select_best and evaluate read it so


def test_manifest_differences_are_counted_in_words():
    old = pd.DataFrame({"file": ["a", "b", "c"], "label": ["x", "y", "x"],
                        "patient": ["p1", "p2", "p3"], "split": ["train", "val", "test"]})
    new = pd.DataFrame({"file": ["a", "b", "d"], "label": ["y", "y", "x"],
                        "patient": ["p1", "p2", "p4"], "split": ["train", "test", "test"]})
    assert data_differences(old, new) == [
        "1 image(s) added (e.g. d)", "1 image(s) gone (e.g. c)",
        "1 image(s) relabelled (e.g. a)", "1 image(s) moved to another split (e.g. b)",
    ]
    assert "different image contents" in data_differences(old, old)[0]


def test_metric_comparison_handles_nan_and_one_sided_metrics():
    rows, worst = compare_metrics({"a": 1.0, "b": math.nan}, {"a": 1.5, "b": math.nan})
    assert rows[0] == ("a", 1.0, 1.5, 0.5) and rows[1][0] == "b" and rows[1][3] == 0.0
    assert worst == 0.5
    rows, worst = compare_metrics({"a": 1.0, "objective": 0.5}, {"a": 1.0, "c": 2.0})
    assert worst == 0.0  # metrics of one run only are listed, not compared
    assert rows == [("a", 1.0, 1.0, 0.0), ("c", None, 2.0, None), ("objective", 0.5, None, None)]
    assert compare_metrics({"a": 1.0}, {"a": math.nan})[1] is None
