"""A logged config made to run here, as logged: a key this version reads that an older one lacks is
named (never filled in from today's files), and what today's schema refuses is one line, never a
traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pipeline.common.errors import ConfigError
from pipeline.config import compose
from pipeline.tracking.logged import Logged, local_config


def logged(state_dir: Path, *overrides: str) -> dict:
    """A run's config.yaml as run_training logs it: resolved."""
    return OmegaConf.to_container(compose([f"state_dir={state_dir}", *overrides]), resolve=True)


def test_an_older_logged_config_names_the_keys_it_lacks_and_takes_them_as_overrides(
        state_dir: Path):
    old = logged(state_dir, "sweep.metric=val_loss", "sweep.direction=minimize")
    del old["trainer"]["_target_"]  # logged before the Trainer was instantiated from the config
    del old["objective"]  # logged before the objective group
    here = compose([f"state_dir={state_dir}"])
    with pytest.raises(ConfigError) as err:
        local_config(Logged("old-run", OmegaConf.create(old)), here, ["trainer.max_epochs=3"])
    message = str(err.value)
    assert "\n" not in message and "run old-run's logged config has no " in message
    for key in ("trainer._target_", "objective.metric", "objective.direction",
                "objective.cv_folds"):
        assert key in message
    given = ["trainer.max_epochs=3", "+trainer._target_=lightning.pytorch.Trainer",
             "+objective.metric=val_loss", "+objective.direction=minimize",
             "+objective.cv_folds=1"]
    local = local_config(Logged("old-run", OmegaConf.create(old)), here, given)
    assert local.trainer._target_ == "lightning.pytorch.Trainer"
    assert (local.objective.metric, local.objective.direction) == ("val_loss", "minimize")
    assert local.trainer.max_epochs == 3 and local.dataset.num_images == 200


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("dataset", "retired_key", 1), "dataset.retired_key is not a config key: dataset has "),
        (("trainer", "max_epochs", "ten"), "trainer.max_epochs='ten' has the wrong type: it takes "
                                           "an integer"),
        (("trainer", "_target_", "os.system"), "trainer._target_=os.system: use "
                                               "lightning.pytorch.Trainer"),
        (("dataset", "on_duplicate", "merge"), "dataset.on_duplicate=merge: use group, warn or "
                                               "error"),
    ],
)
def test_a_logged_config_the_schema_refuses_is_one_line(state_dir: Path, change, expected):
    old = logged(state_dir)
    group, key, value = change
    old[group][key] = value
    with pytest.raises(ConfigError) as err:
        local_config(Logged("a-run", OmegaConf.create(old)), compose([f"state_dir={state_dir}"]))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_an_override_of_a_logged_config_the_schema_refuses_is_one_line(state_dir: Path):
    run_cfg = Logged("a-run", OmegaConf.create(logged(state_dir)))
    here = compose([f"state_dir={state_dir}"])
    with pytest.raises(ConfigError, match=r"override 'trainer.max_epochs=abc': trainer.max_epochs="
                                          r"'abc' has the wrong type: it takes an integer"):
        local_config(run_cfg, here, ["trainer.max_epochs=abc"])
    with pytest.raises(ConfigError, match="override '~trainer.max_epochs': trainer.max_epochs "
                                          "cannot be removed"):
        local_config(run_cfg, here, ["~trainer.max_epochs"])
    with pytest.raises(ConfigError, match="dataset.views is not a config key"):
        local_config(run_cfg, here, ["+dataset.views=[PA]"])
