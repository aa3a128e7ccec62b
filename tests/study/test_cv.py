"""A cross-validated study: k fits per trial in one run, its objective the mean of the folds,
read back from MLflow; the feature cache computed once for every fold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from pipeline.config import compose
from pipeline.data.bundle import load_data
from pipeline.data.folds import fold_of_rows
from pipeline.study.storage import open_study
from pipeline.tracking.models import load_model, model_uri
from pipeline.tracking.store import tracking_uri
from pipeline.training.features.store import features_dir
from tests.sweep_store import run_sweep, trial_runs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_cv_trial_is_one_run_whose_objective_is_the_mean_of_its_folds(tiny_overrides,
                                                                         resnet18_weights,
                                                                         tmp_path):
    space = tmp_path / "lr.yaml"  # the backbone stays frozen whole: one depth for every trial
    space.write_text("params:\n  optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, "
                     "log: true}\n")
    overrides = tiny_overrides(
        "trainer.max_epochs=1", "sweep.cv_folds=3", "sweep.n_trials=2", "sweep.pruner=none",
        "sweep.sampler=random", f"backbone.weights_path={resnet18_weights}",
        "backbone.freeze_depth=5", f"sweep.space={space}", "dataset.num_images=120")
    cfg = compose(overrides)
    assert cfg.objective.cv_folds == 3 and cfg.sweep.cv_folds == 3
    summary = run_sweep(cfg, overrides, echo=False)
    assert summary["n_complete"] == 2
    client = MlflowClient(tracking_uri(cfg))
    runs = trial_runs(cfg, summary["study_name"])
    assert len(runs) == 2  # one run per trial: folds are not nested runs
    trials = {t.number: t for t in open_study(cfg).trials}
    bundle = load_data(cfg)
    pool = np.flatnonzero(bundle.split != "test")
    for run in runs:
        run_id = run.info.run_id
        folds = client.get_metric_history(run_id, "fold_val_auroc")
        assert [m.step for m in folds] == [0, 1, 2]
        mean = float(np.mean([m.value for m in folds]))
        metrics = run.data.metrics
        assert metrics["cv_val_auroc_mean"] == pytest.approx(mean)
        assert metrics["cv_val_auroc_std"] == pytest.approx(np.std([m.value for m in folds]))
        assert metrics["objective"] == pytest.approx(mean)
        assert metrics["best_val_auroc"] == pytest.approx(mean)  # what selection ranks on
        assert trials[int(run.data.tags["optuna_trial"])].value == pytest.approx(mean)
        assert client.get_metric_history(run_id, "fold2_val_auroc")  # each fold's epochs
        # Out-of-fold predictions: every train or val image once, by the fold that held it out.
        oof = pd.read_csv(client.download_artifacts(run_id, "val_predictions.csv"))
        assert sorted(oof["file"]) == sorted(bundle.files[r] for r in pool)
        held_by = dict(zip(oof["file"], oof["fold"], strict=True))
        folds_of = fold_of_rows(bundle, 3, int(cfg.dataset.seed))
        assert all(held_by[bundle.files[r]] == folds_of[r] for r in pool)
    model = load_model(model_uri(runs[0]))  # the fold models, as one mean-probability model
    assert len(model.module.state_dict()) > 0
    x = np.asarray(bundle.images[bundle.indices("test")[:4]])
    probs = model.predict(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # The frozen backbone's features: one entry for the whole pool, shared by all six fits.
    entries = sorted(p.name.split("-")[0] for p in features_dir(cfg.state_dir).rglob("*.npy"))
    assert entries == ["pool"]
