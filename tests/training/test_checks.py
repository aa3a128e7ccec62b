"""Settings under which a number would not mean what it says: refused before training, with the
fix named (issue: frozen random weights, SupCon on identical views, several devices, double
class balancing, ImageNet weights that cannot be had)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
from mlflow import MlflowClient

from pipeline.config import PROJECT_ROOT, ConfigError, compose
from pipeline.runs.context import open_context
from pipeline.runs.training_run import run_training
from pipeline.tracking.store import tracking_uri
from pipeline.training.checks import DoubleBalancingWarning, check_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_default_weights_are_imagenet_on_real_data_and_random_on_synthetic():
    assert compose([]).backbone.pretrained is False  # dataset=synthetic, offline
    for dataset in ("covid_chestxray", "imagefolder", "manifest", "covid19_radiography"):
        assert compose([f"dataset={dataset}"]).backbone.pretrained is True, dataset
    assert compose(["dataset=imagefolder", "backbone.pretrained=false"]).backbone.pretrained is (
        False)


@pytest.mark.slow
def test_train_refuses_to_freeze_random_weights_and_names_the_fix(tiny_overrides):
    overrides = tiny_overrides("backbone.freeze_depth=3", "tracking.log_model=false")
    proc = subprocess.run([sys.executable, "-m", "pipeline.train", *overrides],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert proc.returncode == 2  # bad input
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("error: backbone.freeze_depth=3 would freeze 3 stage(s)")
    for fix in ("backbone.pretrained=true", "backbone.weights_path=", "backbone.freeze_depth=0"):
        assert fix in error
    assert proc.stdout == ""
    client = MlflowClient(tracking_uri(compose(overrides)))
    assert [r for e in client.search_experiments() for r in client.search_runs(
        [e.experiment_id])] == []  # nothing stored for bad input


def test_a_trial_that_samples_frozen_random_weights_fails_as_a_run(tiny_overrides):
    """Inside a sweep the same refusal is a bad sampled config: the trial's run is FAILED."""
    cfg = compose(tiny_overrides("backbone.freeze_depth=3", "tracking.log_model=false"))
    result = run_training(open_context(cfg), cfg)
    assert result.state == "FAIL" and "would freeze 3 stage(s)" in result.error


def test_frozen_stages_of_weights_from_a_file_train(tiny_overrides, resnet18_weights):
    cfg = compose(tiny_overrides("backbone.freeze_depth=3", "tracking.log_model=false",
                                 "trainer.max_epochs=1",
                                 f"backbone.weights_path={resnet18_weights}"))
    assert run_training(open_context(cfg), cfg).state == "COMPLETE"


def test_imagenet_weights_that_cannot_be_had_stop_the_run_naming_both_ways_out(tiny_overrides):
    cfg = compose(tiny_overrides("backbone.pretrained=true", "tracking.log_model=false"))
    result = run_training(open_context(cfg), cfg)
    assert result.state == "FAIL"
    assert "backbone.weights_path" in result.error and "backbone.pretrained=false" in result.error
    run = MlflowClient(tracking_uri(cfg)).get_run(result.run_id)
    assert run.info.status == "FAILED" and run.data.tags["error"] == result.error


def test_supcon_on_identical_views_is_refused(tiny_overrides):
    cfg = compose(tiny_overrides("loss=supcon", "augmentation=none", "tracking.log_model=false"))
    result = run_training(open_context(cfg), cfg)
    assert result.state == "FAIL"
    assert "augmentation=light" in result.error and "identical" in result.error


@pytest.mark.parametrize("devices", [2, "auto", [0, 1]])
def test_more_than_one_device_is_refused_pointing_at_one_worker_per_gpu(devices):
    cfg = compose([])
    cfg.trainer.devices = devices  # as a logged config or a script may hold it
    with pytest.raises(ConfigError, match=r"make sweep GPUS=0,1"):
        check_training(cfg)
    for one in (1, [0]):
        cfg.trainer.devices = one
        check_training(cfg)
    with pytest.raises(ConfigError, match=r"trainer.devices=2: a training runs on one device"):
        check_training(compose(["trainer.devices=2"]))


def test_balancing_classes_twice_is_warned_about():
    with pytest.warns(DoubleBalancingWarning, match="both correct the class imbalance"):
        check_training(compose(["loss.class_weights=true", "dataset.sampler=weighted"]))
    with warnings.catch_warnings():  # one of them alone: no warning

        warnings.simplefilter("error", DoubleBalancingWarning)
        check_training(compose(["loss.class_weights=true"]))
        check_training(compose(["dataset.sampler=weighted"]))
