"""select_best on real tiny sweeps over two backbones, checked against the store, scikit-learn
and the Model Registry."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from pipeline.common.errors import PipelineError
from pipeline.config import compose
from pipeline.data.bundle import load_data
from pipeline.data.images import decode_image
from pipeline.evidence.calibration import fit_temperature, scaled
from pipeline.evidence.operating_point import choose_threshold
from pipeline.runs.context import open_context
from pipeline.selection.champion import data_overrides, select_champion
from pipeline.selection.competition import competition
from pipeline.selection.statistics import holm
from pipeline.tracking.models import load_model
from pipeline.tracking.store import tracking_uri
from tests.sweep_store import BACKBONES, RECIPE, run_module, sweep_store


def served(store, uri: str):
    """A logged model of ``store`` as a function of images: its (unscaled) probabilities."""
    return load_model(uri, tracking_uri(store.cfg)).predict

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return sweep_store(tmp_path_factory.mktemp("sweep"))

SUMMARY_KEYS = {"champion_run_id", "backbone", "metric", "value", "model_name", "version", "table",
                "cv_folds", "operating_point", "n_replicates", "bootstrap_unit", "paired_test",
                "test_uses", "search_gain_test", "search_gain_val", "calibration", "limitations"}
TEST_KEYS = ("test_sensitivity", "test_specificity", "test_accuracy", "test_f1", "test_precision",
             "test_npv", "test_auroc")
ROW_KEYS = {"backbone", "kind", "recipe", "run_id", "trials_complete", "trials_pruned",
            "trials_failed", "val_auroc", "val_minus_test", *TEST_KEYS,
            *(f"{k}_ci" for k in TEST_KEYS), "delta_auroc", "delta_auroc_ci", "p_value", "p_holm",
            "ece", "ece_uncalibrated", "brier", "threshold", "temperature",
            "temperature_at_bound", "degenerate", "per_class", "trainable_params", "total_params",
            "winner"}
BOOTSTRAP = "select.bootstrap=300"


@pytest.fixture(scope="module")
def selected(store):
    """The command's (summary, stdout) on the sweep store."""
    proc = run_module("pipeline.select_best", *store.overrides, BOOTSTRAP)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stdout


def competing_runs(store) -> list:
    """Every run that may compete, found the slow way (a test may list a small store)."""
    return [r for r in store.client.search_runs([store.experiment_id], max_results=1000)
            if r.data.tags.get("role") == "trial" and r.data.tags.get("state") == "COMPLETE"
            and r.info.status == "FINISHED"
            and r.data.tags.get("data_fingerprint") == store.fingerprint]


def best_of(runs: list) -> object:
    return max(runs, key=lambda r: (r.data.metrics["best_val_auroc"],
                                    -r.data.metrics["best_val_loss"], -r.info.start_time))


def test_the_champion_is_the_best_complete_trial_and_each_row_its_backbones_best(store, selected):
    summary, stdout = selected
    assert set(summary) == SUMMARY_KEYS
    runs = competing_runs(store)
    assert {r.info.run_id for r in runs} == {i for ids in store.trials.values() for i in ids}
    champion = best_of(runs)
    assert summary["champion_run_id"] == champion.info.run_id
    assert summary["backbone"] == champion.data.tags["backbone"]
    assert summary["metric"] == "val_auroc"
    assert summary["value"] == champion.data.metrics["best_val_auroc"]
    assert summary["champion_run_id"] not in store.decoys.values()

    table = summary["table"]
    backbones = [row for row in table if row["kind"] == "backbone"]
    assert sorted(row["backbone"] for row in backbones) == sorted(BACKBONES)  # one row each
    assert [row["winner"] for row in table] == [True] + [False] * (len(table) - 1)
    assert table[0]["run_id"] == summary["champion_run_id"]
    for row in table:
        assert set(row) == ROW_KEYS
    for row in backbones:
        mine = [r for r in runs if r.data.tags["backbone"] == row["backbone"]]
        best = best_of(mine)
        assert row["run_id"] == best.info.run_id
        assert row["val_auroc"] == best.data.metrics["best_val_auroc"]
        assert row["trainable_params"] == best.data.metrics["trainable_params"] > 0
        assert row["total_params"] == best.data.metrics["total_params"]
        assert row["trials_complete"] == 2
        assert row["trials_pruned"] == (1 if row["backbone"] == "resnet18" else 0)
        assert row["trials_failed"] == (1 if row["backbone"] == "resnet18" else 0)
    # The best recipe trial is tested beside the champion: its own row, or the row it is.
    recipe_run = best_of([r for r in runs if r.data.tags.get("baseline") == RECIPE])
    recipe_rows = [row for row in table if row["run_id"] == recipe_run.info.run_id]
    assert len(recipe_rows) == 1 and recipe_rows[0]["recipe"] == RECIPE
    assert recipe_rows[0]["kind"] == ("backbone" if recipe_rows[0] in backbones else "recipe")
    assert recipe_rows[0]["test_auroc"] is not None
    gain = summary["search_gain_test"]
    searched = best_of([r for r in runs if "baseline" not in r.data.tags])
    assert (gain["searched_run_id"], gain["recipe_run_id"]) == (searched.info.run_id,
                                                                 recipe_run.info.run_id)
    low, high = gain["ci"]
    assert low <= gain["delta_auroc"] <= high and 0 < gain["p_value"] <= 1
    assert (f"search gain over the papers' recipes on test: {gain['delta_auroc']:+.3f} "
            f"[{low:+.3f}, {high:+.3f}], p = {gain['p_value']:.2f}") in stdout
    assert "search gain over the papers' recipes on validation (optimistic" in stdout
    assert summary["search_gain_val"]["optimistic"] is True

    assert "| Backbone |" in stdout and "(winner)" in stdout
    assert "at the youden threshold chosen on validation" in stdout
    assert "| p (paired patient bootstrap) | p (Holm) |" in stdout  # the header names the test
    assert "(300 replicates, patients stratified by their classes)" in stdout
    assert re.search(r"\| \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] \|", stdout)  # 0.874 [0.812, 0.931]
    assert "warning: the test split has fewer than 20 patients" in stdout  # a tiny test split
    assert summary["n_replicates"] == 300 and summary["paired_test"] == "paired patient bootstrap"
    assert summary["test_uses"] == 1 and "used for selection" not in stdout
    others = table[1:]
    assert [row["p_holm"] for row in others] == pytest.approx(holm([r["p_value"] for r in others]))
    for row in others:
        if row["p_holm"] >= 0.05:
            assert (f"{row['backbone']} against the champion {summary['backbone']}: no "
                    "significant difference detected (Holm-adjusted p = ") in stdout
    assert any("random weights" in line for line in summary["limitations"])


def test_test_metrics_at_the_validation_threshold_match_scikit_learn(store, selected):
    bundle = load_data(store.cfg)
    rows = bundle.indices("test")
    images = torch.from_numpy(np.asarray(bundle.images[rows])).unsqueeze(1).float()
    target = bundle.labels[rows]
    pos = bundle.classes.index(bundle.positive_class)
    truth, negative = target == pos, target != pos
    table = selected[0]["table"]
    champion_auroc = table[0]["test_auroc"]
    for row in table:
        # Each model is tested as it would be served: its network's probabilities scaled by
        # the temperature fitted on its own validation predictions (never on test), and the
        # threshold youden's J picks on those scaled validation predictions.
        model = served(store, f"runs:/{row['run_id']}/model")
        local = store.client.download_artifacts(row["run_id"], "val_predictions.csv")
        val = pd.read_csv(local)
        val_probs = val[[f"p_{c}" for c in bundle.classes]].to_numpy()
        assert row["temperature"] == pytest.approx(fit_temperature(val_probs,
                                                                   val["label"].to_numpy()))
        probs = scaled(model(images).detach().numpy(), row["temperature"])
        assert row["threshold"] == pytest.approx(choose_threshold(
            scaled(val_probs, row["temperature"]), val["label"].to_numpy(), pos, "youden"))
        pred = probs[:, pos] >= row["threshold"]
        # Its selection score is what the engine makes of the same validation predictions.
        assert row["val_auroc"] == pytest.approx(roc_auc_score(val["label"] == pos,
                                                               val_probs[:, pos]), abs=1e-6)
        expected = {
            "test_sensitivity": recall_score(truth, pred),
            "test_specificity": recall_score(negative, ~pred),
            "test_accuracy": accuracy_score(truth, pred),
            "test_f1": f1_score(truth, pred, zero_division=0),
            "test_precision": precision_score(truth, pred, zero_division=0),
            "test_npv": precision_score(negative, ~pred, zero_division=0),
            "test_auroc": roc_auc_score(truth, probs[:, pos]),
        }
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, abs=1e-6), (row["backbone"], key)
            low, high = row[f"{key}_ci"]
            assert low <= high and 0.0 <= low and high <= 1.0
        assert row["brier"] == pytest.approx(brier_score_loss(truth, probs[:, pos]), abs=1e-6)
        assert 0.0 <= row["ece"] <= 1.0
        if row["winner"]:
            assert row["delta_auroc"] is None and row["p_value"] is None
        else:
            assert row["delta_auroc"] == pytest.approx(row["test_auroc"] - champion_auroc)
            low, high = row["delta_auroc_ci"]
            assert low <= high and 0.0 < row["p_value"] <= 1.0
            assert row["p_holm"] >= row["p_value"]  # p and the interval agree about zero:
            assert (low > 0 or high < 0) == (row["p_value"] < 0.05) or abs(
                row["p_value"] - 0.05) < 4 / 301
        assert row["val_minus_test"] == pytest.approx(row["val_auroc"] - roc_auc_score(
            truth, model(images).detach().numpy()[:, pos]), abs=1e-6)
        per_class = row["per_class"][bundle.positive_class]
        assert per_class["sensitivity"] == pytest.approx(row["test_sensitivity"])


def test_the_registry_alias_points_at_the_champion(store, selected):
    summary = selected[0]
    version = store.client.get_model_version_by_alias(summary["model_name"], "champion")
    assert summary["model_name"] == "chest-xray-cnn"
    assert str(version.version) == summary["version"]
    assert version.run_id == summary["champion_run_id"]
    assert version.tags["run_id"] == summary["champion_run_id"]
    assert version.tags["metric"] == "val_auroc"
    assert float(version.tags["value"]) == summary["value"]
    assert float(version.tags["threshold"]) == summary["table"][0]["threshold"]
    assert version.tags["operating_point"] == summary["operating_point"] == "youden"
    assert float(version.tags["temperature"]) == summary["table"][0]["temperature"] == (
        summary["calibration"]["temperature"])
    assert version.tags["temperature_scope"] == "network"
    assert version.tags["threshold_scale"] == "calibrated"
    x = torch.randint(0, 256, (3, 1, 32, 32)).float()
    registered = served(store, f"models:/{summary['model_name']}@champion")(x)
    logged = served(store, f"runs:/{summary['champion_run_id']}/model")(x)
    assert torch.equal(registered, logged)


def test_the_selection_is_one_run_with_test_metrics_and_the_table(store, selected):
    summary = selected[0]
    runs = store.client.search_runs([store.experiment_id], "tags.role = 'selection'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["champion_run_id"] == summary["champion_run_id"]
    assert run.data.tags["model_version"] == summary["version"]
    winner = summary["table"][0]
    assert run.data.metrics["test_auroc"] == pytest.approx(winner["test_auroc"])
    assert run.data.metrics["test_auroc_ci_low"] == pytest.approx(winner["test_auroc_ci"][0])
    for row in summary["table"]:
        name = row["backbone"]
        assert run.data.metrics[f"{name}.test_f1"] == pytest.approx(row["test_f1"])
        for key in TEST_KEYS:  # every interval logged as the JSON line gives it
            low, high = row[f"{key}_ci"]
            assert run.data.metrics[f"{name}.{key}_ci_low"] == pytest.approx(low)
            assert run.data.metrics[f"{name}.{key}_ci_high"] == pytest.approx(high)
        for key in ("ece", "brier", "threshold"):
            assert run.data.metrics[f"{name}.{key}"] == pytest.approx(row[key])
        if row["p_value"] is not None:
            assert run.data.metrics[f"{name}.p_value"] == pytest.approx(row["p_value"])
    assert summary["cv_folds"] == 1
    assert run.data.metrics["val_nll_after"] <= run.data.metrics["val_nll_before"]
    assert run.data.tags["test_uses"] == "1" and run.data.metrics["n_replicates"] == 300
    artifacts = {a.path for a in store.client.list_artifacts(run.info.run_id)}
    assert {"comparison.md", "comparison.csv", "reliability_diagram.png", *BACKBONES} <= artifacts
    local = store.client.download_artifacts(run.info.run_id, "comparison.csv")
    with open(local) as f:
        logged = list(csv.DictReader(io.StringIO(f.read())))
    assert [r["run_id"] for r in logged] == [r["run_id"] for r in summary["table"]]
    predictions = {a.path for a in store.client.list_artifacts(run.info.run_id, "resnet18")}
    assert "resnet18/test_predictions.csv" in predictions


def test_no_runs_to_compare_is_one_line_and_exit_2(tmp_path):
    proc = run_module("pipeline.select_best", f"state_dir={tmp_path}")
    assert proc.returncode == 2 and proc.stdout == ""
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no runs to compare") and "no MLflow store" in last
    assert proc.stderr.count("error:") == 1


def test_no_runs_of_the_chosen_dataset_names_the_datasets_that_have_some(store):
    cfg = compose([*store.overrides, "select.dataset=covid"])
    with pytest.raises(PipelineError, match=r"no runs to compare.*dataset\(s\) synthetic"):
        competition(store.tracking, cfg, lambda: pytest.fail("not needed"))


def test_runs_of_other_data_without_a_choice_are_listed(store):
    # The store holds trials of two fingerprints; data configured as neither decides nothing.
    cfg = compose([*store.overrides, "dataset.num_images=80"])
    with pytest.raises(PipelineError, match="2 different data fingerprints") as err:
        competition(store.tracking, cfg, lambda: load_data(cfg).fingerprint)
    assert store.fingerprint in str(err.value) and store.decoys["other_data"] in str(err.value)
    chosen = compose([*store.overrides, f"select.fingerprint={store.fingerprint}"])
    assert competition(store.tracking, chosen, lambda: "").fingerprint == store.fingerprint


def test_only_dataset_overrides_reach_each_runs_logged_config():
    assert data_overrides(["state_dir=/x", "dataset.root=/d", "+dataset.csv=a", "select.metric=m"
                           ]) == ["dataset.root=/d", "+dataset.csv=a"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def test_the_report_renders_in_a_real_browser_with_its_table_and_every_figure(
        store, selected, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    summary, stdout = selected
    path = Path(next(ln for ln in stdout.splitlines() if ln.startswith("report: "))[8:])
    assert path.parent == Path(store.cfg.state_dir) / "reports"
    assert path.name == f"selection-synthetic-{store.fingerprint}.html"
    runs = store.client.search_runs([store.experiment_id], "tags.role = 'selection'")
    assert path.name in {a.path for a in store.client.list_artifacts(runs[0].info.run_id)}
    page = path.read_text()
    assert "http://" not in page and "https://" not in page  # self-contained: nothing fetched

    base = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "report.png"
    subprocess.run([*base, "--window-size=1200,1800", f"--screenshot={shot}", path.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 20  # not a blank page: text, tables and figures drawn
    dom = subprocess.run([*base, "--dump-dom", path.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert 'id="comparison"' in dom and "(champion)" in dom
    for ident in ("roc", "reliability", "gradcam-0",
                  *(f"confusion-{row['backbone']}" for row in summary["table"])):
        assert f'id="{ident}"' in dom, ident
    for b in BACKBONES:  # each study's name carries its data fingerprint and settings digest
        assert f'id="history-synthetic-{b}-' in dom, b
    for section in ("data", "protocol", "methods", "external"):
        assert f'id="{section}"' in dom, section
    assert "The test split was used after selection only, by this selection" in dom
    assert "used once" not in dom
    for section in ("limitations-list", "checklist-table", "n-replicates"):
        assert f'id="{section}"' in dom, section
    assert "random weights" in dom and "not available: " in dom
    assert "<code>python -m pipeline.sweep " in dom  # the commands that produced the studies
    # Each Grad-CAM caption gives the positive class's probability against the threshold that
    # labelled the image, so a caption says what its kind says.
    captions = re.findall(r"(true positive|false positive|false negative): [^<]*? \(p\((\w+)\)="
                          r"([0-9.]+), threshold ([0-9.]+), truth (\w+)\)", dom)
    assert captions
    positive = load_data(store.cfg).positive_class
    for kind, named, p, threshold, truth in captions:
        assert named == positive
        assert (float(p) >= float(threshold)) == (kind != "false negative"), (kind, p, threshold)
        assert (truth == positive) == (kind != "false positive")


def test_selecting_again_counts_the_uses_of_the_test_split(store, selected):
    # Last of the fast tests of this store: it adds a second selection run.
    cfg = compose([*store.overrides, BOOTSTRAP])
    said: list[str] = []
    summary = select_champion(open_context(cfg, data=False), cfg, store.overrides,
                              say=lambda *a, **k: said.append(" ".join(map(str, a))))
    text = "\n".join(said)
    assert summary["test_uses"] == 2
    assert "this test split has now been used for selection 2 times" in text
    assert any("used for selection 2 times" in line for line in summary["limitations"])
    page = Path(next(line for line in said if line.startswith("report: "))[8:]).read_text()
    methods = re.search(r"<p id='methods-paragraph'>(.*?)</p>", page).group(1)
    assert "this test split has now been used for selection 2 times" in methods
    runs = store.client.search_runs([store.experiment_id], "tags.role = 'selection'")
    assert sorted(r.data.tags["test_uses"] for r in runs) == ["1", "2"]


@pytest.mark.slow
def test_an_ensemble_row_is_the_mean_of_the_best_trials(store):
    cfg = compose([*store.overrides, BOOTSTRAP, "select.ensemble=2"])
    summary = select_champion(open_context(cfg, data=False), cfg, store.overrides,
                              say=lambda *a, **k: None)
    row = next(r for r in summary["table"] if r["backbone"] == "ensemble of the top 2")
    members = [best_of(competing_runs(store))]
    rest = [r for r in competing_runs(store) if r.info.run_id != members[0].info.run_id]
    members.append(best_of(rest))
    assert row["run_id"] == "+".join(m.info.run_id for m in members)
    bundle = load_data(store.cfg)
    images = torch.from_numpy(np.asarray(bundle.images[bundle.indices("test")])).unsqueeze(1)
    # Served as a backbone is: each member's probabilities scaled by the ensemble's
    # temperature, then averaged.
    probs = np.mean([scaled(served(store, f"runs:/{m.info.run_id}/model")(
        images.float()).detach().numpy(), row["temperature"]) for m in members], axis=0)
    pos = bundle.classes.index(bundle.positive_class)
    truth = bundle.labels[bundle.indices("test")] == pos
    assert row["test_auroc"] == pytest.approx(roc_auc_score(truth, probs[:, pos]), abs=1e-6)
    assert row["delta_auroc"] is not None or row["winner"]
    # Ranked on the backbones' quantity: validation AUROC of its (mean) validation predictions.
    vals = [pd.read_csv(store.client.download_artifacts(m.info.run_id, "val_predictions.csv"))
            for m in members]
    val_mean = np.mean([v[[f"p_{c}" for c in bundle.classes]].to_numpy() for v in vals], axis=0)
    assert row["val_auroc"] == pytest.approx(roc_auc_score(vals[0]["label"] == pos,
                                                           val_mean[:, pos]))


@pytest.mark.slow
def test_an_ensemble_that_wins_on_validation_is_registered_and_predicts(store, monkeypatch,
                                                                       tmp_path):
    import pipeline.selection.ensemble as ensemble

    monkeypatch.setattr(ensemble, "validation_score", lambda ev, metric: 2.0)  # it wins
    name = "xray-ensemble-test"
    cfg = compose([*store.overrides, BOOTSTRAP, "select.ensemble=2", f"select.model_name={name}"])
    summary = select_champion(open_context(cfg, data=False), cfg, store.overrides,
                              say=lambda *a, **k: None)
    assert summary["backbone"] == "ensemble of the top 2" and summary["table"][0]["winner"]
    version = store.client.get_model_version_by_alias(name, "champion")
    run = store.client.get_run(version.run_id)
    assert run.data.tags["role"] == "ensemble" and version.tags["members"] == (
        summary["table"][0]["run_id"])
    bundle = load_data(store.cfg)
    image = tmp_path / "x.png"
    Image.fromarray(np.asarray(bundle.images[bundle.indices("test")[0]])).save(image)
    proc = run_module("pipeline.predict", str(image), store.overrides[0],
                      f"select.model_name={name}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    x = torch.from_numpy(decode_image(str(image), 32)).float()[None, None]
    temperature = float(version.tags["temperature"])
    assert line["temperature"] == pytest.approx(temperature)
    expected = np.mean([scaled(served(store, f"runs:/{i}/model")(x).detach().numpy(),
                               temperature)[0] for i in version.tags["members"].split("+")],
                       axis=0)
    np.testing.assert_allclose(list(line["probabilities"].values()), expected, atol=1e-5)
