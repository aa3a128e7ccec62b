"""External validation: a model trained on one dataset scored on every image of another, with a
label map, checked against scikit-learn; an unmapped class is one clear error."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import accuracy_score, roc_auc_score

from pipeline.common.errors import DataError
from pipeline.data.bundle import load_data
from pipeline.data.images import decode_image
from pipeline.evaluate import main
from pipeline.tracking.models import load_model, model_uri
from tests.data.xray_files import write_class_tree
from tests.sweep_store import run_module, sweep_store

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return sweep_store(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def kermany_like(tmp_path_factory):
    """Another dataset: covid, normal and pneumonia folders (the model knows normal, covid)."""
    root = tmp_path_factory.mktemp("external") / "folders"
    write_class_tree(root, {"covid": 6, "normal": 5, "pneumonia": 4}, start_seed=300)
    return root


def evaluate(store, root, *more):
    return run_module("pipeline.evaluate", "--model", store.trials["resnet18"][0],
                      store.overrides[0], "dataset=imagefolder", f"dataset.root={root}",
                      "select.bootstrap=100", *more)


@pytest.mark.slow
def test_a_model_is_scored_on_another_dataset_through_a_label_map(store, kermany_like):
    proc = evaluate(store, kermany_like, "evaluate.label_map={pneumonia: normal}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(last) == {"run_id", "model_run_id", "dataset", "n_images", "n_overlap", "metrics",
                         "intervals", "n_replicates"}
    assert last["model_run_id"] == store.trials["resnet18"][0]
    assert last["dataset"] == "imagefolder" and last["n_images"] == 15  # every image, no split
    assert last["n_overlap"] == 0 and last["n_replicates"] == 100
    assert "0 of 15 images are also in the development data and were left out" in proc.stdout
    low, high = last["intervals"]["auroc"]
    assert low <= last["metrics"]["auroc"] <= high

    run = store.client.get_run(store.trials["resnet18"][0])
    model = load_model(model_uri(run), store.tracking.uri)
    files = sorted(p for p in kermany_like.rglob("*") if p.is_file())
    x = torch.from_numpy(np.stack([decode_image(p, model.image_size) for p in files]))
    probs = model.predict(x).numpy()
    names = [p.parent.name for p in files]
    target = np.array([model.classes.index({"pneumonia": "normal"}.get(n, n)) for n in names])
    pos = model.classes.index(model.positive_class)
    assert last["metrics"]["auroc"] == pytest.approx(roc_auc_score(target == pos,
                                                                   probs[:, pos]), abs=1e-6)
    assert last["metrics"]["accuracy"] == pytest.approx(accuracy_score(target,
                                                                       probs.argmax(1)))
    logged = store.client.get_run(last["run_id"])
    assert logged.data.tags["role"] == "external"
    assert logged.data.tags["model_run_id"] == last["model_run_id"]
    assert logged.data.metrics["external_auroc"] == pytest.approx(last["metrics"]["auroc"])
    assert logged.data.metrics["external_auroc_ci_low"] == pytest.approx(low)
    assert logged.data.metrics["n_overlap"] == 0
    assert logged.inputs.dataset_inputs[0].dataset.name == "imagefolder"


def in_process(store, root, *more) -> list[str]:
    return ["--model", store.trials["resnet18"][0], store.overrides[0], "dataset=imagefolder",
            f"dataset.root={root}", "select.bootstrap=100", *more]


def test_a_class_the_model_does_not_know_and_the_map_does_not_cover_is_an_error(store,
                                                                                kermany_like):
    with pytest.raises(DataError) as err:
        main(in_process(store, kermany_like))
    error = str(err.value)
    assert "class 'pneumonia' is not one of the model's classes ['normal', 'covid']" in error
    assert "['covid', 'normal', 'pneumonia']" in error and "evaluate.label_map" in error


def test_with_one_class_present_the_metrics_that_need_both_are_null(store, tmp_path, capsys):
    root = tmp_path / "only_covid"
    write_class_tree(root, {"covid": 5}, start_seed=500)
    assert main(in_process(store, root)) == 0
    out = capsys.readouterr().out
    last = json.loads(out.strip().splitlines()[-1])
    assert last["metrics"]["auroc"] is None and last["metrics"]["accuracy"] is not None
    assert "AUROC needs both classes" in out


def test_images_also_in_the_development_data_are_left_out_and_counted(store, kermany_like,
                                                                      tmp_path, capsys):
    """Development images saved again in the external folders: found as the split finds its
    duplicates (for generated data: the same pixels), left out, counted."""
    root = tmp_path / "with_copies"
    shutil.copytree(kermany_like, root)
    bundle = load_data(store.cfg)
    copied = [bundle.indices(split)[0] for split in ("train", "val", "test")]
    for i, row in enumerate(copied):
        name = "covid" if bundle.labels[row] == bundle.classes.index("covid") else "normal"
        Image.fromarray(np.asarray(bundle.images[row])).save(root / name / f"copy{i}.png")
    assert main(in_process(store, root, "evaluate.label_map={pneumonia: normal}")) == 0
    out = capsys.readouterr().out
    last = json.loads(out.strip().splitlines()[-1])
    assert last["n_overlap"] == 3 and last["n_images"] == 15  # the 15 originals are scored
    assert "3 of 18 images are also in the development data and were left out" in out
    logged = store.client.get_run(last["run_id"])
    assert logged.data.metrics["n_overlap"] == 3 and logged.data.metrics["n_images"] == 15
