"""Predicting image files with the registered champion or a run's model, with Grad-CAM."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from pipeline.common.errors import PipelineError
from pipeline.config import compose
from pipeline.data.bundle import load_data
from pipeline.data.images import decode_image
from pipeline.evidence.calibration import scaled
from pipeline.inference.gradcam import grad_cam, rebuild_net
from pipeline.inference.prediction import split_overrides
from pipeline.models import build_model
from pipeline.predict import main
from pipeline.tracking.logged import read_logged
from pipeline.tracking.models import load_model, model_uri
from pipeline.tracking.registry import register_champion
from tests.sweep_store import run_module, sweep_store

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODEL_NAME = "xray-predict-test"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = sweep_store(tmp_path_factory.mktemp("sweep"))
    run = store.client.get_run(store.trials["resnet18"][0])
    register_champion(store.tracking, MODEL_NAME, run, {"run_id": run.info.run_id})
    return store


@pytest.fixture(scope="module")
def images(store, tmp_path_factory):
    """Three test-split radiographs as PNG (one enlarged to RGB), a corrupt file, a missing one."""
    folder = tmp_path_factory.mktemp("images")
    bundle = load_data(store.cfg)
    rows = bundle.indices("test")[:3]
    paths = []
    for i, row in enumerate(rows):
        image = Image.fromarray(np.asarray(bundle.images[row]))
        if i == 2:
            image = image.convert("RGB").resize((100, 80))
        paths.append(folder / f"xray{i}.png")
        image.save(paths[-1])
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = [str(p) for p in paths]
    return {"good": good, "all": [good[0], str(folder / "corrupt.png"), good[1],
                                  str(folder / "missing.jpg"), good[2]]}


def test_predict_with_the_champion_gives_the_models_probabilities_and_cams(
        store, images, tmp_path):
    cams = tmp_path / "cams"
    proc = run_module("pipeline.predict", *images["all"], "--model", "champion", "--cam",
                      str(cams), store.overrides[0], f"select.model_name={MODEL_NAME}")
    assert proc.returncode == 1, proc.stderr[-3000:]  # some images were unreadable
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert [line["image"] for line in lines] == images["all"]
    assert set(lines[1]) == set(lines[3]) == {"image", "error"}
    assert "not an image" in lines[1]["error"] and "not found" in lines[3]["error"]

    model = champion_by_hand(store, tmp_path)
    classes = load_data(store.cfg).classes
    for line in (lines[0], lines[2], lines[4]):
        assert set(line) == {"image", "label", "probabilities", "temperature", "threshold"}
        assert line["temperature"] is None and line["threshold"] is None  # none was stored
        probs = line["probabilities"]
        assert list(probs) == classes
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert line["label"] == max(probs, key=probs.get)
        x = torch.from_numpy(decode_image(line["image"], 32)).float()[None, None]
        expected = model(x).softmax(dim=1).detach().numpy()[0]
        np.testing.assert_allclose(list(probs.values()), expected, rtol=0, atol=1e-6)

    written = sorted(p.name for p in cams.iterdir())
    assert written == ["xray0_gradcam.png", "xray1_gradcam.png", "xray2_gradcam.png"]
    overlay = np.asarray(Image.open(cams / "xray0_gradcam.png"))
    assert overlay.shape == (256, 256, 3)
    assert np.abs(overlay[..., 0].astype(int) - overlay[..., 2]).max() > 0  # coloured


def champion_by_hand(store, tmp_path):
    """The champion's network built from its run's logged config, given the weights file of its
    model folder: what predict must serve, reached without the pipeline's loader."""
    run_id = store.client.get_model_version_by_alias(MODEL_NAME, "champion").run_id
    folder = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model", dst_path=str(tmp_path),
                                                 tracking_uri=store.tracking.uri)
    cfg = read_logged(store.tracking, run_id).config
    cfg.backbone.pretrained = False
    net = build_model(cfg, 2)
    weights = load_file(f"{folder}/weights.safetensors")
    net.load_state_dict({k.removeprefix("nets.0."): v for k, v in weights.items()})
    return net.eval()


def test_predict_with_a_run_id_uses_that_runs_model(store, images, capsys):
    run_id = store.trials["mobilenet_v2"][1]
    assert main([*images["good"], "--model", run_id, store.overrides[0]]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    model = load_model(model_uri(store.client.get_run(run_id)), store.tracking.uri)
    pixels = np.stack([decode_image(p, model.image_size) for p in images["good"]])
    expected = model.predict(torch.from_numpy(pixels)).numpy()
    got = np.array([list(line["probabilities"].values()) for line in lines])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_the_champion_is_served_with_its_stored_temperature_and_threshold(store, images,
                                                                         capsys):
    """What select_best stores with the version is what predict applies: each network's
    probabilities scaled by the temperature, then the label at the threshold on that scale."""
    run = store.client.get_run(store.trials["mobilenet_v2"][0])
    name = f"{MODEL_NAME}-calibrated"
    model = load_model(model_uri(run), store.tracking.uri)
    pixels = torch.from_numpy(np.stack([decode_image(p, 32) for p in images["good"]]))
    raw = model.predict(pixels).numpy()
    served = scaled(raw, 2.5)
    positive = model.classes.index(model.positive_class)
    low = np.sort(served[:, positive])
    threshold = float(low[0] + low[1]) / 2  # the two higher images are positive
    register_champion(store.tracking, name, run, {
        "run_id": run.info.run_id, "temperature": repr(2.5), "threshold": repr(threshold),
        "temperature_scope": "network", "threshold_scale": "calibrated"})
    assert main([*images["good"], store.overrides[0], f"select.model_name={name}"]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.strip().splitlines()]
    got = np.array([list(line["probabilities"].values()) for line in lines])
    np.testing.assert_allclose(got, served, rtol=0, atol=1e-6)
    for line, p in zip(lines, served[:, positive], strict=True):
        assert line["temperature"] == 2.5 and line["threshold"] == threshold
        assert (line["label"] == model.positive_class) == (p >= threshold)
    assert "calibration: temperature 2.5000" in err and "at least" in err

    # A version registered before temperatures were served: its threshold was chosen on
    # unscaled probabilities, so it is served unscaled, and predict says so.
    old = f"{MODEL_NAME}-old"
    register_champion(store.tracking, old, run, {"run_id": run.info.run_id,
                                                 "temperature": repr(2.5)})
    assert main([*images["good"], store.overrides[0], f"select.model_name={old}"]) == 0
    out, err = capsys.readouterr()
    got = np.array([list(json.loads(line)["probabilities"].values())
                    for line in out.strip().splitlines()])
    np.testing.assert_allclose(got, raw, rtol=0, atol=1e-6)
    assert "note: this champion was registered before its temperature was served" in err


def test_without_a_champion_or_with_an_unknown_run_the_message_says_what_to_do(store, images):
    with pytest.raises(PipelineError, match="run `python -m pipeline.select_best` first"):
        main([images["good"][0], store.overrides[0], "select.model_name=nobody"])
    with pytest.raises(PipelineError, match="run 'feedbeef' is not in the MLflow store"):
        main([images["good"][0], "--model", "feedbeef", store.overrides[0]])


def test_the_rebuilt_network_is_the_logged_model(store, images):
    run_id = store.trials["resnet18"][0]
    model = load_model(model_uri(store.client.get_run(run_id)), store.tracking.uri)
    net = rebuild_net(read_logged(store.tracking, run_id).config, model)
    pixels = torch.from_numpy(np.stack([decode_image(p, 32) for p in images["good"]]))
    with torch.no_grad():
        mine = net(pixels[:, None].float()).softmax(dim=1)
    torch.testing.assert_close(mine, model.predict(pixels), rtol=0, atol=1e-6)


def test_grad_cam_matches_a_hook_based_reference():
    cfg = compose(["backbone=resnet18", "dataset.image_size=96"])
    torch.manual_seed(0)
    net = build_model(cfg, 3).eval()
    image = np.random.default_rng(0).integers(0, 256, (96, 96), dtype=np.uint8)
    cam, probs = grad_cam(net, image, class_index=1)

    # Textbook Grad-CAM: activations and gradients of the last stage through hooks.
    saved = {}
    handle = net.backbone.stages[-1].register_forward_hook(
        lambda module, inputs, output: saved.update(act=output) or output.retain_grad())
    x = torch.from_numpy(image).float()[None, None]
    logits = net(x)
    logits[0, 1].backward()
    handle.remove()
    act = saved["act"]
    assert act.shape[-2:] == (3, 3)
    weights = act.grad.mean(dim=(2, 3), keepdim=True)
    ref = F.relu((weights * act).sum(dim=1, keepdim=True))
    ref = F.interpolate(ref, size=(96, 96), mode="bilinear", align_corners=False)[0, 0]
    ref = (ref / ref.max()).detach().numpy()
    np.testing.assert_allclose(cam, ref, atol=1e-5)
    np.testing.assert_allclose(probs, logits.softmax(dim=1)[0].detach().numpy(), atol=1e-6)
    assert cam.min() >= 0 and cam.max() == pytest.approx(1.0)


def test_image_arguments_and_overrides_are_told_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "odd=name.png").write_bytes(b"")
    args = ["a.png", "state_dir=/x", "+extra.key=1", "odd=name.png", "dir/b.jpg", "~drop"]
    assert split_overrides(args) == (["a.png", "odd=name.png", "dir/b.jpg"],
                                     ["state_dir=/x", "+extra.key=1", "~drop"])


@pytest.mark.slow
def test_the_champions_operating_point_decides_the_label(store, images):
    """A champion registered with a threshold (as select_best does) labels an image positive
    exactly when the positive class's probability reaches it, and says so."""
    run = store.client.get_run(store.trials["mobilenet_v2"][0])
    name = f"{MODEL_NAME}-threshold"
    plain = [json.loads(line) for line in run_module(
        "pipeline.predict", *images["good"], "--model", run.info.run_id,
        store.overrides[0]).stdout.strip().splitlines()]
    positive = load_data(store.cfg).positive_class
    p = sorted(line["probabilities"][positive] for line in plain)
    threshold = (p[0] + p[1]) / 2  # between the two lowest: a label the argmax may not give
    register_champion(store.tracking, name, run, {"run_id": run.info.run_id,
                                                "threshold": repr(threshold)})
    proc = run_module("pipeline.predict", *images["good"], store.overrides[0],
                      f"select.model_name={name}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"operating point: {positive} when its probability is at least {threshold:.4f}" in (
        proc.stderr)
    for line in map(json.loads, proc.stdout.strip().splitlines()):
        expected = positive if line["probabilities"][positive] >= threshold else next(
            c for c in line["probabilities"] if c != positive)
        assert line["label"] == expected
