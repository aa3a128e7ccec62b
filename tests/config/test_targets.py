"""The ``_target_`` allowlist: what conf/ names passes, anything else is refused before a call."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from pipeline.common.errors import ConfigError
from pipeline.config import CONF_DIR, compose
from pipeline.config.targets import check_targets, instantiate, target_refusal


def test_every_target_the_config_files_name_is_allowed():
    for path in sorted(CONF_DIR.rglob("*.yaml")):
        check_targets(OmegaConf.load(path), str(path))  # raises on a refusal
    for option in ("optimizer=sgd", "scheduler=plateau", "scheduler=cosine", "head=paper004",
                   "augmentation=strong"):
        check_targets(compose([option]))


@pytest.mark.parametrize("target", [
    "os.system", "pathlib.Path.touch", "builtins.open", "subprocess.run", "torch.load",
    "torch.hub.load", "torch.jit.load", "torch.save", "timm.models.load_checkpoint",
    "torch.nn.Module.load_state_dict", "pipeline.models.weights.read_state_dict",
    "timm.models.create_model", "timm.create_model", "lightning.pytorch.callbacks.ModelCheckpoint",
    "pipeline.common.atomic.atomic_write", "lightning.pytorch.Trainer.save_checkpoint",
    "torch.optim._private", "torch", "torch.optim", "not a name",
])
def test_a_target_outside_the_list_is_refused(target):
    assert target_refusal(target) is not None


def test_a_nested_target_is_refused_naming_its_key_and_nothing_runs(tmp_path):
    planted = tmp_path / "planted"
    head = OmegaConf.create({
        "_target_": "pipeline.models.heads.linear_head", "name": "linear",
        "dropout": {"_target_": "pathlib.Path.touch", "_args_": [str(planted)]},
    })
    with pytest.raises(ConfigError) as err:
        instantiate(head, _partial_=True)
    message = str(err.value)
    assert "\n" not in message
    assert "dropout._target_='pathlib.Path.touch'" in message and "nothing was run" in message
    assert not planted.exists()
    # A list entry and a keyword argument are checked too.
    with pytest.raises(ConfigError, match=r"layers\.1\._target_='os\.system'"):
        check_targets({"layers": [{"_target_": "torch.nn.ReLU"},
                                  {"_target_": "os.system", "_args_": ["true"]}]})
    with pytest.raises(ConfigError, match="argument extra"):
        instantiate({"_target_": "torch.nn.Identity"},
                    extra={"_target_": "builtins.open", "_args_": [str(planted), "w"]})
    assert not planted.exists()


def test_an_override_naming_another_target_is_refused():
    with pytest.raises(ConfigError, match=r"head\.dropout\._target_='os\.system'"):
        compose(["+head.dropout._target_=os.system"])
