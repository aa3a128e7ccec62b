"""The schema: every key typed at composition, the values a key takes and its bounds checked once,
each refusal one line that names the key and what it takes."""

from __future__ import annotations

import dataclasses
import inspect
import shutil
from pathlib import Path

import lightning.pytorch as pl
import pytest
from omegaconf import OmegaConf

from pipeline.common.errors import ConfigError
from pipeline.config import CONF_DIR, check_values, compose
from pipeline.config.schema import TRAINER_ARGUMENTS
from pipeline.data import dhash

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir())
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]


def refusal(*overrides: str) -> str:
    with pytest.raises(ConfigError) as err:
        compose(list(overrides))
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("group", "option"), OPTIONS)
def test_every_option_is_typed_by_a_schema(group: str, option: str):
    extra = ["dataset.root=/d", "dataset.csv=x.csv"] if option == "manifest" else []
    node = compose([f"{group}={option}", *extra])[group]
    if group == "head":  # a head's keys are its factory's arguments: instantiate checks them
        assert not dataclasses.is_dataclass(OmegaConf.get_type(node))
        return
    schema = OmegaConf.get_type(node)
    assert dataclasses.is_dataclass(schema), f"{group}={option} is not typed"
    assert list(node) == [f.name for f in dataclasses.fields(schema)]  # no key beside the schema


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["dataset.batch_size=abc"], "dataset.batch_size='abc' has the wrong type: it takes an "
                                     "integer (default: 32)"),
        (["sweep.timeout=soon"], "sweep.timeout='soon' has the wrong type: it takes a number "
                                 "(default: null)"),
        (["trainer.progress_bar=[1]"], "trainer.progress_bar=[1] has the wrong type: it takes "
                                       "true or false (default: true)"),
        (["dataset=covid_chestxray", "dataset.modalities=X-ray"],
         "dataset.modalities='X-ray' has the wrong type: it takes a list like [a, b]"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_key_and_what_it_takes(overrides, expected):
    assert expected in refusal(*overrides)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["objective.direction=up"], "objective.direction=up: use maximize or minimize"),
        (["sweep.direction=up"], "sweep.direction=up: use maximize or minimize"),  # as typed
        (["sweep.pruner=asha"], "sweep.pruner=asha: use median, hyperband or none"),
        (["trainer.channels_last=yes"], "trainer.channels_last=yes: use auto, true or false"),
        (["trainer.feature_cache=1"], "trainer.feature_cache=1: use auto, true or false"),
        (["loss=supcon", "loss.mode=two-stage"], "loss.mode=two-stage: use joint or two_stage"),
        (["dataset=medmnist", "dataset.size=100"], "dataset.size=100: use 28, 64, 128 or 224"),
        (["dataset.num_workers=-1"], "dataset.num_workers=-1: use auto or an integer of at "
                                     "least 0"),
        (["dataset.batch_size=0"], "dataset.batch_size=0 must be an integer of at least 1"),
        (["dataset.val_fraction=1"], "dataset.val_fraction=1 must be in [0, 1)"),
    ],
)
def test_a_value_outside_its_literal_or_bounds_names_what_the_key_takes(overrides, expected):
    assert refusal(*overrides) == expected


@pytest.mark.parametrize("override", ["dataset.views=PA", "+dataset.views=PA"])
def test_a_key_the_group_does_not_have_is_refused_listing_its_keys(override):
    message = refusal(override)
    assert message.startswith("dataset.views is not a config key: dataset has name, root, ")
    assert "num_images" in message


def test_a_schema_key_cannot_be_deleted_but_a_mapping_entry_can():
    assert refusal("~trainer.max_epochs").startswith("trainer.max_epochs cannot be removed")
    cfg = compose(["dataset=covid19_radiography", "~dataset.class_dirs.lung_opacity"])
    assert "lung_opacity" not in cfg.dataset.class_dirs


@pytest.mark.parametrize("key", ["trainer._target_", "optimizer._target_",
                                 "augmentation._target_"])
def test_instantiate_gets_only_the_targets_the_project_calls(key):
    group = ["augmentation=light"] if key.startswith("augmentation") else []
    assert f"{key}=os.system: use " in refusal(*group, f"{key}=os.system")


def test_a_bad_value_in_a_config_file_names_the_file(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    mine = (conf / "dataset" / "synthetic.yaml").read_text().replace("name: synthetic",
                                                                     "name: mine")
    (conf / "dataset" / "mine.yaml").write_text(mine + "batch_size: lots\n")
    monkeypatch.setattr("pipeline.config.composition.CONF_DIR", conf)
    message = refusal("dataset=mine")
    assert message.startswith("dataset.batch_size='lots' has the wrong type: it takes an integer")
    assert message.endswith("(in dataset/mine)")
    (conf / "dataset" / "mine.yaml").write_text(mine + "on_duplicate: merge\n")
    assert refusal("dataset=mine") == "dataset.on_duplicate=merge: use group, warn or error"
    (conf / "dataset" / "mine.yaml").write_text(mine + "views: [PA]\n")
    assert refusal("dataset=mine").startswith("dataset.views is not a config key")


def test_the_shared_dataset_keys_are_given_once():
    """Each dataset file holds its own keys; the keys every dataset has come from the schema."""
    shared = {"num_workers", "on_bad_image", "on_duplicate", "sampler", "seed"}
    for path in (CONF_DIR / "dataset").glob("*.yaml"):
        assert not shared & set(OmegaConf.load(path)), path.name
        assert "Duplicate images" not in path.read_text(), path.name  # the comment, once
        cfg = compose([f"dataset={path.stem}"])
        assert (cfg.dataset.on_duplicate, cfg.dataset.sampler) == ("group", "none")


def test_the_schema_bounds_are_the_data_layers():
    bits = compose(["dataset.near_duplicate_bits=64"]).dataset.near_duplicate_bits
    assert bits == dhash.MAX_BITS
    assert f"from 0 to {dhash.MAX_BITS} (bits of a {dhash.HASH_BITS}-bit hash)" in refusal(
        f"dataset.near_duplicate_bits={dhash.MAX_BITS + 1}")


def test_trainer_arguments_are_the_trainers_and_nothing_else():
    parameters = inspect.signature(pl.Trainer.__init__).parameters
    assert TRAINER_ARGUMENTS[0] == "_target_"
    assert set(TRAINER_ARGUMENTS[1:]) <= set(parameters)
    trainer = compose([]).trainer
    assert trainer._target_ == "lightning.pytorch.Trainer"
    assert {"monitor", "feature_cache", "channels_last", "progress_bar"} <= set(trainer)
    assert not {"monitor", "feature_cache", "channels_last", "progress_bar"} & set(
        TRAINER_ARGUMENTS)


def test_a_config_changed_after_composition_is_checked_again():
    cfg = compose([])
    cfg.select.direction = "sideways"  # a typed key takes any string: its values are checked
    with pytest.raises(ConfigError, match="select.direction=sideways: use maximize or minimize"):
        check_values(cfg)
    check_values(compose([]))


def test_types_keep_the_kind_of_value_given(tmp_path: Path):
    cfg = compose(["trainer.limit_train_batches=2", "sweep.timeout=60", "optimizer.lr=1"])
    assert cfg.trainer.limit_train_batches == 2 and isinstance(cfg.trainer.limit_train_batches,
                                                               int)  # 2 batches, not a fraction
    assert isinstance(cfg.sweep.timeout, int) and isinstance(cfg.optimizer.lr, int)
