"""A cross-validated study: k fits per trial in one run, its objective the mean of the folds,
read back from MLflow; the feature cache computed once for every fold."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from PIL import Image
from sklearn.metrics import roc_auc_score

from pipeline.config import compose
from pipeline.data.bundle import load_data
from pipeline.data.folds import fold_of_rows
from pipeline.evidence.calibration import Calibration, ece, fit_temperature, scaled
from pipeline.evidence.operating_point import choose_threshold
from pipeline.predict import main as predict_main
from pipeline.runs.context import open_context
from pipeline.selection.champion import select_champion
from pipeline.tracking.models import load_model, model_uri
from pipeline.tracking.store import tracking_uri
from pipeline.training.features.store import features_dir
from tests.conftest import TINY
from tests.sweep_store import run_sweep, study_of, trial_runs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cv_study(tmp_path_factory, resnet18_weights):
    """A cross-validated study of two trials (3 folds each), its overrides and summary."""
    root = tmp_path_factory.mktemp("cv")
    (root / "state").mkdir()
    space = root / "lr.yaml"  # the backbone stays frozen whole: one depth for every trial
    space.write_text("params:\n  optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, "
                     "log: true}\n")
    overrides = [f"state_dir={root / 'state'}", *TINY,
                 "trainer.max_epochs=1", "sweep.cv_folds=3", "sweep.n_trials=2",
                 "sweep.pruner=none", "sweep.sampler=random",
                 f"backbone.weights_path={resnet18_weights}", "backbone.freeze_depth=5",
                 f"sweep.space={space}", "dataset.num_images=120", "dataset.num_classes=2"]
    cfg = compose(overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = run_sweep(cfg, overrides, echo=False)
    finally:
        torch.set_num_threads(threads)
    return overrides, cfg, summary


def test_a_cv_trial_is_one_run_whose_objective_is_the_mean_of_its_folds(cv_study):
    overrides, cfg, summary = cv_study
    assert cfg.objective.cv_folds == 3 and cfg.sweep.cv_folds == 3
    assert summary["n_complete"] == 2
    client = MlflowClient(tracking_uri(cfg))
    runs = trial_runs(cfg, summary["study_name"])
    assert len(runs) == 2  # one run per trial: folds are not nested runs
    trials = {t.number: t for t in study_of(overrides).trials}
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
    # The fold models, as one mean-probability model.
    model = load_model(model_uri(runs[0]), tracking_uri(cfg))
    assert len(model.module.state_dict()) > 0
    x = np.asarray(bundle.images[bundle.indices("test")[:4]])
    probs = model.predict(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    networks = model.network_probabilities(torch.from_numpy(x)).numpy()  # one per fold
    assert networks.shape == (3, 4, 2)
    np.testing.assert_allclose(networks.mean(axis=0), probs, rtol=0, atol=1e-7)
    assert np.abs(networks[0] - networks[1]).max() > 0  # three networks, not one thrice
    # The frozen backbone's features: one entry for the whole pool, shared by all six fits.
    entries = sorted(p.name.split("-")[0] for p in features_dir(cfg.state_dir).rglob("*.npy"))
    assert entries == ["pool"]


def test_a_cv_champion_is_calibrated_per_fold_network_and_served_so(cv_study, tmp_path, capsys):
    """The temperature is fitted on the out-of-fold predictions (each image by the fold network
    that never trained on it), applied to each fold network before averaging, in selection's
    test and in predict alike; the threshold is chosen on those calibrated out-of-fold ones."""
    overrides, cfg, _ = cv_study
    select_cfg = compose([*overrides, "select.bootstrap=100"])
    summary = select_champion(open_context(select_cfg, data=False), select_cfg, overrides,
                              say=lambda *a, **k: None)
    assert summary["cv_folds"] == 3
    client = MlflowClient(tracking_uri(cfg))
    oof = pd.read_csv(client.download_artifacts(summary["champion_run_id"],
                                                "val_predictions.csv"))
    bundle = load_data(cfg)
    val = oof[[f"p_{c}" for c in bundle.classes]].to_numpy()
    temperature = fit_temperature(val, oof["label"].to_numpy())
    calibration = summary["calibration"]
    assert calibration["temperature"] == pytest.approx(temperature)
    positive = bundle.classes.index(bundle.positive_class)
    threshold = choose_threshold(scaled(val, temperature), oof["label"].to_numpy(), positive,
                                 "youden")
    assert calibration["threshold"] == pytest.approx(threshold)
    model = load_model(model_uri(client.get_run(summary["champion_run_id"])), tracking_uri(cfg))
    rows = bundle.indices("test")
    networks = model.network_probabilities(torch.from_numpy(np.asarray(bundle.images[rows])))
    served = Calibration(temperature).probabilities(networks.numpy())
    truth = bundle.labels[rows] == positive
    assert summary["table"][0]["test_auroc"] == pytest.approx(
        roc_auc_score(truth, served[:, positive]), abs=1e-6)
    assert calibration["ece_after"] == pytest.approx(ece(served, bundle.labels[rows], positive))
    assert any("means over 3 folds" in line for line in summary["limitations"])

    image = tmp_path / "x.png"
    Image.fromarray(np.asarray(bundle.images[rows[0]])).save(image)
    assert predict_main([str(image), overrides[0]]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["temperature"] == pytest.approx(temperature)
    assert line["threshold"] == pytest.approx(threshold)
    np.testing.assert_allclose(list(line["probabilities"].values()), served[0], atol=1e-6)
    called = bundle.positive_class if served[0, positive] >= threshold else next(
        c for c in bundle.classes if c != bundle.positive_class)
    assert line["label"] == called
