"""Config composition: every group composes, and bad overrides are one line naming the key."""

from __future__ import annotations

import pytest

from pipeline.common.errors import ConfigError
from pipeline.config import CONF_DIR, compose

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir())


@pytest.mark.parametrize(
    "override",
    [f"{g}={p.stem}" for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))],
)
def test_every_option_of_every_group_composes(override):
    if override.startswith("dataset=manifest"):
        override = [override, "dataset.root=/data", "dataset.csv=labels.csv"]
    cfg = compose(override if isinstance(override, list) else [override])
    assert cfg.seed == 42


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["dataset.batch_size=abc"], ["dataset.batch_size", "an integer", "32"]),
        (["trainer.max_epochs=2.5"], ["trainer.max_epochs", "an integer"]),
        (["optimizer=sgd", "optimizer.momentum=fast"], ["optimizer.momentum", "a number"]),
        (["trainer.deterministic=maybe"], ["trainer.deterministic", "true or false"]),
        (["dataset.views=PA"], None),  # synthetic has no views key: unknown key
        (["optimizer.lrr=0.1"], ["lrr"]),
        (["optimizer=rmsprop"], ["rmsprop", "adam", "adamw", "sgd"]),
        (["backbone=resnet"], ["resnet", "resnet50", "densenet121"]),
    ],
)
def test_a_bad_override_is_one_line_naming_the_key(overrides, expected):
    with pytest.raises(ConfigError) as err:
        compose(overrides)
    message = str(err.value)
    assert "\n" not in message
    for part in expected or [overrides[0].split("=")[0].split(".")[-1]]:
        assert part in message


def test_values_of_the_right_type_pass():
    cfg = compose(["optimizer.lr=1e-3", "trainer.early_stopping_patience=null",
                   "trainer.precision=16-mixed", "sweep.timeout=60", "dataset.num_images=50"])
    assert cfg.optimizer.lr == 1e-3 and cfg.trainer.early_stopping_patience is None


def test_one_objective_read_by_the_trainer_the_sweep_and_selection():
    """sweep.metric and sweep.direction, as users type them, set the objective group; the
    trainer's monitor reads the objective, never the sweep's keys."""
    cfg = compose(["sweep.metric=val_loss", "sweep.direction=minimize"])
    assert (cfg.objective.metric, cfg.objective.direction) == ("val_loss", "minimize")
    assert (cfg.trainer.monitor, cfg.trainer.monitor_mode) == ("val_loss", "min")
    assert (cfg.select.metric, cfg.select.direction) == ("val_loss", "minimize")
    assert (cfg.sweep.metric, cfg.sweep.direction) == ("val_loss", "minimize")
    same = compose(["objective.metric=val_loss", "objective.direction=minimize"])
    assert same == cfg
    trainer_yaml = (CONF_DIR / "trainer" / "default.yaml").read_text()
    assert "sweep." not in trainer_yaml


def test_pretrained_takes_auto_true_or_false():
    with pytest.raises(ConfigError, match="backbone.pretrained='maybe': use auto, true or false"):
        compose(["backbone.pretrained=maybe"])
    assert compose(["backbone.pretrained=auto", "dataset=imagefolder"]).backbone.pretrained is True
