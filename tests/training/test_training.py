"""One training end to end: Lightning fit on synthetic images, read back from the MLflow store."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score

from pipeline.config import PROJECT_ROOT, compose
from pipeline.data.bundle import load_data
from pipeline.data.datamodule import ChestXrayDataModule
from pipeline.runs.context import open_context
from pipeline.runs.training_run import run_training
from pipeline.tracking.models import load_model
from pipeline.tracking.store import tracking_uri


def served(uri: str, cfg) -> object:
    """A logged model of ``cfg``'s store as a function of images: its (unscaled) probabilities."""
    return load_model(uri, tracking_uri(cfg)).predict

EPOCH_METRICS = [
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_balanced_accuracy",
    "val_sensitivity",
    "val_specificity",
    "val_precision",
    "val_npv",
    "val_f1",
    "val_auroc",
]
ARTIFACTS = [
    "config.yaml",
    "split_manifest.csv",
    "confusion_matrix.png",
    "roc_curve.png",
    "loss_curve.png",
    "accuracy_curve.png",
    "classification_report.txt",
    "classification_report.json",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _client(cfg) -> MlflowClient:
    mlflow.set_tracking_uri(tracking_uri(cfg))
    return MlflowClient(tracking_uri(cfg))


def test_a_training_logs_metrics_artifacts_and_a_model_that_predicts_the_same(tiny_overrides):
    cfg = compose(tiny_overrides("evaluate_test=true", "dataset.num_classes=2"))
    result = run_training(open_context(cfg), cfg)
    assert result.state == "COMPLETE", result.error
    client = _client(cfg)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    for name in EPOCH_METRICS:
        history = client.get_metric_history(result.run_id, name)
        assert len(history) >= 2, name  # one value per epoch
    for name in EPOCH_METRICS[2:]:
        assert f"test_{name[4:]}" in run.data.metrics
    tags = run.data.tags
    assert tags["backbone"] == "resnet18" and tags["dataset"] == "synthetic"
    assert tags["data_fingerprint"] == load_data(cfg).fingerprint
    assert tags["weights"] == "random" and tags["git_commit"]
    (data_input,) = run.inputs.dataset_inputs  # the runs table's Dataset column
    assert data_input.dataset.name == "synthetic"
    assert data_input.dataset.digest == tags["data_fingerprint"]
    assert {t.key: t.value for t in data_input.tags}["mlflow.data.context"] == "train"
    assert run.data.params["optimizer.lr"] == str(cfg.optimizer.lr)
    assert run.data.metrics["trainable_params"] == run.data.metrics["total_params"] > 0
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert set(ARTIFACTS) <= artifacts
    assert {"test_confusion_matrix.png", "test_classification_report.json"} <= artifacts

    # The logged model reloads and gives the probabilities behind the logged val_auroc.
    model = served(f"runs:/{result.run_id}/model", cfg)
    bundle = load_data(cfg)
    data = ChestXrayDataModule.from_config(cfg, bundle)
    xs, ys = zip(*data.val_dataloader(), strict=True)
    probs = model(torch.cat(xs).float()).detach().numpy()
    target = torch.cat(ys).numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    positive = bundle.classes.index(bundle.positive_class)
    auroc = roc_auc_score(target == positive, probs[:, positive])
    assert run.data.metrics["best_val_auroc"] == pytest.approx(auroc, abs=1e-5)
    assert result.metrics["val_auroc"] == pytest.approx(auroc, abs=1e-5)


def test_same_seed_on_cpu_repeats_to_the_last_digit(tiny_overrides):
    cfg = compose(tiny_overrides("tracking.log_model=false", "augmentation=light"))
    ctx = open_context(cfg)  # as a sweep's trials: one store, one bundle
    first, second = run_training(ctx, cfg), run_training(ctx, cfg)
    assert first.state == second.state == "COMPLETE"
    assert first.metrics == second.metrics


def test_a_non_finite_loss_fails_the_run_with_the_reason(tiny_overrides):
    cfg = compose(tiny_overrides("optimizer=sgd", "optimizer.lr=1e30", "tracking.log_model=false"))
    result = run_training(open_context(cfg), cfg)
    assert result.state == "FAIL"
    run = _client(cfg).get_run(result.run_id)
    assert run.info.status == "FAILED"
    assert "loss became" in run.data.tags["error"] and "optimizer.lr" in run.data.tags["error"]


@pytest.mark.parametrize("mode", ["joint", "two_stage"])
def test_supcon_trains_in_both_modes(tiny_overrides, mode):
    cfg = compose(tiny_overrides("loss=supcon", f"loss.mode={mode}", "loss.pretrain_epochs=1",
                                 "augmentation=light", "tracking.log_model=false"))
    result = run_training(open_context(cfg), cfg)
    assert result.state == "COMPLETE", result.error
    client = _client(cfg)
    run = client.get_run(result.run_id)
    epochs = [m.step for m in client.get_metric_history(result.run_id, "train_loss")]
    if mode == "two_stage":
        assert [m.step for m in client.get_metric_history(result.run_id, "pretrain_loss")] == [0]
        # The classifier's epochs follow the pre-training epoch, on the frozen pre-trained
        # backbone: only the head (and the unused projection) trains.
        assert epochs == [1, 2]
        assert run.data.metrics["trainable_params"] < run.data.metrics["total_params"] / 10
    else:
        assert epochs == [0, 1]
    assert 0.0 <= run.data.metrics["best_val_auroc"] <= 1.0
    assert run.data.metrics["best_epoch"] in (0, 1)


def test_freeze_depth_counts_trainable_parameters(tiny_overrides, resnet18_weights):
    cfg = compose(tiny_overrides("backbone.freeze_depth=5", "tracking.log_model=false",
                                 "trainer.max_epochs=1",
                                 f"backbone.weights_path={resnet18_weights}"))
    result = run_training(open_context(cfg), cfg)
    run = _client(cfg).get_run(result.run_id)
    assert 0 < run.data.metrics["trainable_params"] < run.data.metrics["total_params"] / 100


def test_train_command_prints_the_run_and_a_json_last_line(tiny_overrides):
    overrides = tiny_overrides("trainer.max_epochs=1", "tracking.log_model=false")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.train", *overrides],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["status"] == "FINISHED" and set(EPOCH_METRICS[2:]) <= set(last["metrics"])
    assert f"run {last['run_id']}" in proc.stdout


def test_train_command_rejects_a_bad_override_in_one_line(tiny_overrides):
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.train", *tiny_overrides("optimizer=rmsprop")],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "rmsprop" in proc.stderr
    assert "adam" in proc.stderr  # the valid choices
