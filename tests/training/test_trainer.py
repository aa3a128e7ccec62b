"""The Trainer instantiated from conf/trainer: its own arguments from the config, the pipeline's
fixed choices and this machine's precision added, the pipeline's keys kept out."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from pipeline.common.errors import ConfigError
from pipeline.config import compose
from pipeline.config.targets import instantiate
from pipeline.training.trainer import make_trainer


class Mark(pl.Callback):
    pass


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU resolution of auto")
def test_the_trainer_is_the_configs_with_what_the_pipeline_fixes():
    cfg = compose(["trainer.limit_train_batches=2", "trainer.gradient_clip_val=0.5",
                   "trainer.progress_bar=false", "trainer.max_epochs=7"])
    mark = Mark()
    trainer = make_trainer(cfg, [mark], max_epochs=3)
    assert isinstance(trainer, pl.Trainer)
    assert trainer.max_epochs == 3  # the caller's budget wins over trainer.max_epochs
    assert trainer.limit_train_batches == 2 and trainer.limit_val_batches == 1.0
    assert trainer.gradient_clip_val == 0.5
    assert trainer.precision == "32-true"  # precision=auto on a CPU
    assert mark in trainer.callbacks  # the very callback: the caller reads it after fit
    assert trainer.progress_bar_callback is None
    assert trainer.logger is None and trainer.checkpoint_callback is None
    assert trainer.num_sanity_val_steps == 0
    assert torch.are_deterministic_algorithms_enabled()
    assert make_trainer(cfg, [], max_epochs=1, validate=False).limit_val_batches == 0
    progress = make_trainer(compose([]), [], max_epochs=1).progress_bar_callback
    assert progress is not None


def test_fp16_gradient_clipping_with_a_fused_step_is_one_line_before_training():
    clip = ["trainer.precision=16-mixed", "trainer.gradient_clip_val=1.0"]
    with pytest.raises(ConfigError, match="optimizer.fused=false"):
        make_trainer(compose(clip), [], max_epochs=1)
    # bf16 needs no loss scaling, so Lightning clips a fused step's gradients there.
    assert make_trainer(compose(["trainer.precision=bf16-mixed", "trainer.gradient_clip_val=1.0"]),
                        [], max_epochs=1).gradient_clip_val == 1.0


@pytest.mark.parametrize("option", ["adam", "adamw", "sgd"])
def test_every_optimiser_takes_torchs_fused_step_unless_told_not_to(option):
    net = torch.nn.Linear(3, 2)
    for fused in (True, False):
        cfg = compose([f"optimizer={option}", f"optimizer.fused={str(fused).lower()}"])
        optimizer = instantiate(cfg.optimizer)(net.parameters())
        assert bool(optimizer.defaults["fused"]) is fused
