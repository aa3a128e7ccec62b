"""``backbone.weights=run:<RUN_ID>`` / ``run:champion``: a sweep starts its backbone from the
network a first sweep logged, searches the freeze depth on it (they count as pretrained), uses
the feature cache, and records where the weights came from; a run of another backbone is
refused in one line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from pipeline.common.errors import ConfigError, PipelineError
from pipeline.config import compose, state_dir
from pipeline.models import build_model, describe_weights
from pipeline.models.transfer import transfer_file
from pipeline.runs.transfer import with_transfer
from pipeline.sweep import main as sweep
from pipeline.tracking.models import load_model, log_model, model_uri
from pipeline.tracking.registry import register_champion
from pipeline.tracking.schema import Role, Tag
from pipeline.tracking.store import open_store
from pipeline.training.checks import check_frozen_weights
from tests.sweep_store import study_of

pytestmark = pytest.mark.usefixtures("one_torch_thread")
MODEL_NAME = "xray-transfer-test"


def trial_runs(overrides, store) -> list:
    study = study_of(overrides)
    return [(t, store.get_run(t.user_attrs["mlflow_run_id"])) for t in study.trials]


@pytest.mark.slow
def test_a_sweep_starts_from_a_logged_runs_backbone_and_searches_its_freeze_depth(
        tiny_overrides, capsys):
    first = tiny_overrides("trainer.max_epochs=1", "sweep.n_trials=1", "sweep.pruner=none",
                           "sweep.baselines=none", "sweep.sampler=random",
                           "backbone.pretrained=false", "sweep.study_name=source")
    assert sweep(first) == 0
    cfg = compose(first)
    store = open_store(cfg)
    [(_, source)] = trial_runs(first, store)
    assert "backbone.freeze_depth" not in study_of(first).trials[0].params  # random weights
    register_champion(store, MODEL_NAME, source, {"run_id": source.info.run_id})

    second = tiny_overrides("trainer.max_epochs=1", "sweep.n_trials=2", "sweep.pruner=none",
                            "sweep.baselines=none", "sweep.sampler=random", "seed=3",
                            "trainer.feature_cache=true", "sweep.study_name=transfer",
                            "backbone.weights=run:champion", f"select.model_name={MODEL_NAME}")
    capsys.readouterr()
    assert sweep(second) == 0
    assert f"the champion is run:{source.info.run_id}" in capsys.readouterr().out
    trials = trial_runs(second, store)
    depths = [t.params["backbone.freeze_depth"] for t, _ in trials]
    assert max(depths) > 0, depths  # searched, and frozen stages of those weights trained
    for trial, run in trials:
        assert run.info.status == "FINISHED", run.data.tags.get("error")
        assert run.data.tags[Tag.WEIGHTS] == f"run:{source.info.run_id}"
        assert run.data.params["backbone.weights"] == f"run:{source.info.run_id}"
        if trial.params["backbone.freeze_depth"] > 0:
            assert run.data.tags[Tag.FEATURE_CACHE] != "off"

    # The backbone taken is the source run's, tensor for tensor; the head was not taken.
    kept = load_file(str(transfer_file(state_dir(cfg), source.info.run_id)))
    net = load_model(model_uri(source), store.uri).module.groups[0][0]
    for key, tensor in net.backbone.state_dict().items():
        assert torch.equal(kept[key], tensor), key
    assert not any(k.startswith("head.") for k in kept)


def test_a_run_of_another_backbone_is_refused_in_one_line(tiny_overrides):
    cfg = compose(tiny_overrides("backbone.pretrained=false"))
    store = open_store(cfg)
    bundle = SimpleNamespace(classes=["covid", "normal"], image_size=32, positive_class="covid")
    with store.open_run(Role.TRIAL, name="source") as run:
        log_model([build_model(cfg, 2).eval()], cfg, bundle, run.id, store)
    other = tiny_overrides("backbone=mobilenet_v2", f"backbone.weights=run:{run.id}")
    with pytest.raises(PipelineError, match="holds a resnet18 backbone, but backbone="
                                            "mobilenet_v2") as refused:
        with_transfer(compose(other), other)
    assert "\n" not in str(refused.value)
    assert not transfer_file(state_dir(cfg), run.id).exists()


@pytest.mark.parametrize(("overrides", "message"), [
    (["backbone.weights=imagenet"], "use run:<RUN_ID> or run:champion"),
    (["backbone.weights=run:abc", "backbone.weights_path=/tmp/w.pth"], "keep one"),
])
def test_bad_weights_are_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message):
        describe_weights(compose(overrides))


def test_run_weights_count_as_pretrained_for_the_frozen_stage_rule():
    cfg = compose(["backbone.weights=run:abc", "backbone.freeze_depth=3",
                   "backbone.pretrained=false"])
    assert describe_weights(cfg) == "run:abc"
    check_frozen_weights(cfg)  # no refusal: frozen stages of a trained backbone
