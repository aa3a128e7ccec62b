"""Search-space files: the shipped ones load, and every mistake names the file and the key."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from pipeline.common.errors import ConfigError
from pipeline.config import compose
from pipeline.models.catalog import stage_count
from pipeline.study.space import SWEEPS_DIR, backbone_option, load_space, overrides_of


@pytest.fixture(scope="module")
def cfg():
    return compose(["backbone=resnet18"])


@pytest.mark.parametrize("name", sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml")))
def test_shipped_spaces_load_and_sample_composable_overrides(cfg, name):
    space = load_space(name, cfg)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    values = space.sample(trial, cfg)
    assert set(values) == set(space.params)
    depth = values.get("backbone.freeze_depth")
    chosen = backbone_option(values["backbone"]) if "backbone" in values else cfg.backbone
    assert depth is None or 0 <= depth <= stage_count(chosen)  # the chosen backbone's stages
    base = [] if "backbone" in values else ["backbone=resnet18"]
    trial_cfg = compose([*base, *space.fixed_overrides(), *overrides_of(values)])
    for key, value in values.items():
        if "." in key:
            assert trial_cfg[key.split(".")[0]][key.split(".", 1)[1]] == value


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params: [1, 2", "not valid YAML"),
        ("fixed: {}\n", "non-empty `params:`"),
        ("params:\n  optimizer.lrr: {type: float, low: 1, high: 2}\n", "params.optimizer.lrr"),
        ("params:\n  optimizer.lr: {type: uniform, low: 1, high: 2}\n", "type:` one of"),
        ("params:\n  optimizer.lr: {type: float, low: 2, high: 1}\n", "low=2 is above high=1"),
        ("params:\n  optimizer.lr: {type: float, low: 0, high: 1, log: true}\n", "log scale"),
        ("params:\n  optimizer.lr: {type: float, low: a, high: 1}\n", "low='a' must be a number"),
        ("params:\n  optimizer.lr: {type: float, lo: 0, high: 1}\n", "unknown field(s) ['lo']"),
        ("params:\n  optimizer: {type: categorical, choices: [adam, rmsprop]}\n", "rmsprop"),
        ("params:\n  dataset.batch_size: {type: categorical, choices: []}\n", "non-empty list"),
        ("params:\n  head.dropout: {type: float, low: 0, high: max}\n", "only applies"),
        ("params:\n  optimizer.lr: {type: float, low: 1, high: 2}\nfixd: {}\n", "fixd"),
    ],
)
def test_a_malformed_space_is_one_line_naming_file_and_key(cfg, tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_space(path, cfg)
    message = str(err.value)
    assert expected in message and path in message and "\n" not in message


def test_an_unknown_space_name_lists_the_known_ones(cfg):
    with pytest.raises(ConfigError, match=r"sweep.space=nope.*'default'"):
        load_space("nope", cfg)


def test_exponents_without_a_dot_are_numbers(cfg, tmp_path):
    space = load_space(_write(tmp_path, "params:\n  optimizer.lr: "
                                        "{type: float, low: 1e-5, high: 1e-2, log: true}\n"), cfg)
    assert space.params["optimizer.lr"]["low"] == pytest.approx(1e-5)
