"""Logged models are weights plus a manifest: they round-trip to the same probabilities (one
network, a cross-validated run's folds, an ensemble of runs), and a model stored as a pickle is
refused before anything in it runs, unless the user opts in."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
import torch

from pipeline.common.errors import PipelineError
from pipeline.config import compose
from pipeline.models import build_model
from pipeline.predict import main as predict
from pipeline.tracking.ensemble_model import log_ensemble
from pipeline.tracking.model_files import MANIFEST
from pipeline.tracking.models import MODEL_PATH, load_model, log_model, model_uri
from pipeline.tracking.schema import Role
from pipeline.tracking.store import open_store, use_for_fluent
from tests.conftest import TINY

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CLASSES = ["covid", "normal"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    cfg = compose([f"state_dir={state}", *TINY, "backbone.pretrained=false"])
    return cfg, open_store(cfg)


def nets(cfg, n: int, seed: int = 0) -> list:
    torch.manual_seed(seed)
    return [build_model(cfg, len(CLASSES)).eval() for _ in range(n)]


def logged(cfg, store, networks) -> str:
    bundle = SimpleNamespace(classes=CLASSES, image_size=32, positive_class="covid")
    with store.open_run(Role.TRIAL, name="t") as run:
        log_model(networks, cfg, bundle, run.id, store)
    return run.id


def images() -> torch.Tensor:
    return torch.randint(0, 256, (5, 32, 32), generator=torch.Generator().manual_seed(1),
                         dtype=torch.uint8)


def softmax(networks, x) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([n(x[:, None].float()).softmax(dim=1) for n in networks])


def test_one_network_and_a_cross_validated_run_round_trip_to_the_same_probabilities(setup):
    cfg, store = setup
    x = images()
    for count in (1, 3):
        networks = nets(cfg, count, seed=count)
        run_id = logged(cfg, store, networks)
        files = {Path(f.path).name for f in store.client.list_artifacts(run_id, MODEL_PATH)}
        assert files == {"weights.safetensors", MANIFEST}  # no pickle anywhere
        model = load_model(model_uri(store.get_run(run_id)), store.uri)
        expected = softmax(networks, x)
        torch.testing.assert_close(model.network_probabilities(x), expected, rtol=0, atol=0)
        torch.testing.assert_close(model.predict(x), expected.mean(dim=0), rtol=0, atol=1e-7)
        assert model.classes == CLASSES and model.image_size == 32


def test_an_ensemble_is_its_members_weights_and_serves_their_mean(setup):
    cfg, store = setup
    members = [nets(cfg, 1, seed=5), nets(cfg, 2, seed=6)]
    uris = [model_uri(store.get_run(logged(cfg, store, m))) for m in members]
    with store.open_run(Role.ENSEMBLE, name="e") as run:
        log_ensemble(run.id, uris, CLASSES, 32, "covid", store)
    model = load_model(model_uri(store.get_run(run.id)), store.uri)
    x = images()
    expected = torch.stack([softmax(m, x).mean(dim=0) for m in members])
    torch.testing.assert_close(model.network_probabilities(x), expected, rtol=0, atol=1e-7)
    torch.testing.assert_close(model.predict(x), expected.mean(dim=0), rtol=0, atol=1e-7)
    assert [m["uri"] for m in model.manifest["members"]] == uris
    assert [m["folds"] for m in model.manifest["members"]] == [1, 2]


def tampered(store, run_id: str, folder: Path, edit: Callable[[Path], None]) -> str:
    """The model of ``run_id`` downloaded, changed by ``edit`` (given its folder) and logged as
    another run's model, as someone else's copied store could hold it; that model's URI."""
    folder.mkdir(parents=True, exist_ok=True)
    mlflow.artifacts.download_artifacts(artifact_uri=f"runs:/{run_id}/{MODEL_PATH}",
                                        dst_path=str(folder), tracking_uri=store.uri)
    edit(folder / MODEL_PATH)
    with store.open_run(Role.TRIAL, name="tampered") as run:
        store.log_artifacts(run.id, folder / MODEL_PATH, MODEL_PATH)
    return f"runs:/{run.id}/{MODEL_PATH}"


def test_weights_without_their_manifest_never_load(setup, tmp_path):
    cfg, store = setup
    uri = tampered(store, logged(cfg, store, nets(cfg, 1)), tmp_path,
                   lambda model: (model / MANIFEST).unlink())
    with pytest.raises(PipelineError, match="incomplete: it has no manifest.json"):
        load_model(uri, store.uri)


@pytest.mark.parametrize("where", ["head", "nested"])
def test_a_manifest_that_names_a_callable_outside_the_heads_is_refused(setup, tmp_path, where):
    cfg, store = setup
    touched = tmp_path / "touched"

    def craft(model: Path) -> None:
        manifest = json.loads((model / MANIFEST).read_text())
        head = manifest["members"][0]["config"]["head"]
        if where == "head":
            head.update({"_target_": "os.system", "command": f"touch {touched}"})
        else:
            head["dropout"] = {"_target_": "os.system", "command": f"touch {touched}"}
        (model / MANIFEST).write_text(json.dumps(manifest))

    uri = tampered(store, logged(cfg, store, nets(cfg, 1)), tmp_path / "copy", craft)
    with pytest.raises(PipelineError, match="_target_") as refused:
        load_model(uri, store.uri)
    assert "head" in str(refused.value) and not touched.exists()


class Touch:
    """Unpickling this creates the file ``path``: what any code in a pickle could do."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


class TouchingModel(mlflow.pyfunc.PythonModel):
    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))

    def predict(self, context, model_input, params=None):
        return model_input


def pyfunc_run(store, path: Path) -> str:
    use_for_fluent(store.uri)
    with store.open_run(Role.TRIAL, name="pickled") as run:
        with mlflow.start_run(run_id=run.id):
            mlflow.pyfunc.log_model(name="model", python_model=TouchingModel(path),
                                    metadata={"classes": CLASSES, "image_size": 32},
                                    pip_requirements=["mlflow"])
    path.unlink(missing_ok=True)  # MLflow may load what it logs: only what comes after counts
    return run.id


def pth_run(store, path: Path, tmp: Path) -> str:
    folder = tmp / "pth"
    folder.mkdir()
    (folder / "model.pth").write_bytes(pickle.dumps(Touch(path)))
    with store.open_run(Role.TRIAL, name="pth") as run:
        store.log_artifacts(run.id, folder, MODEL_PATH)
    return run.id


@pytest.mark.parametrize("kind", ["pyfunc", "pth"])
def test_a_pickled_model_is_refused_and_nothing_in_it_runs(setup, tmp_path, kind, capsys):
    cfg, store = setup
    touched = tmp_path / "touched"
    run_id = pyfunc_run(store, touched) if kind == "pyfunc" else pth_run(store, touched, tmp_path)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(images()[0].numpy()).save(image)
    overrides = [str(image), "--model", run_id, f"state_dir={cfg.state_dir}"]
    with pytest.raises(PipelineError, match=r"tracking\.allow_pickle=true") as refused:
        predict(overrides)
    assert "\n" not in str(refused.value)
    assert not touched.exists()
    if kind == "pyfunc":  # the flag is what stands between the store and the machine
        with pytest.raises(Exception):  # noqa: B017 - what the pickle left is no model
            predict([*overrides, "tracking.allow_pickle=true"])
        assert touched.exists()
