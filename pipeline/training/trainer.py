"""The Lightning Trainer a run uses: device, precision, determinism, what it monitors."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf

from pipeline.common.errors import ConfigError
from pipeline.config.schema import TRAINER_ARGUMENTS
from pipeline.config.targets import instantiate

# What the pipeline itself fixes: BestWeights keeps the best epoch's weights in memory, metrics
# go to MLflow through the run's observer, and validation starts with the first epoch.
FIXED = {"logger": False, "enable_checkpointing": False, "enable_model_summary": False,
         "num_sanity_val_steps": 0}


def uses_gpu(cfg: DictConfig) -> bool:
    return torch.cuda.is_available() and cfg.trainer.accelerator in ("auto", "gpu", "cuda")


def resolve_precision(cfg: DictConfig) -> str:
    """``auto``: full precision on CPU; bf16 mixed precision on GPUs that have it, else fp16."""
    precision = str(cfg.trainer.precision)
    if precision != "auto":
        return precision
    if uses_gpu(cfg):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The dtype Lightning's mixed precision runs the forward pass in (None: no autocast)."""
    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)


def monitor(cfg: DictConfig) -> tuple[str, str]:
    """(metric, mode) the trainer watches: early stopping and the best epoch's weights."""
    metric = str(cfg.trainer.monitor)
    mode = str(cfg.trainer.get("monitor_mode", "auto"))
    if mode == "auto":
        mode = "min" if "loss" in metric else "max"
    return metric, mode


def make_trainer(
    cfg: DictConfig,
    callbacks: list[pl.Callback],
    max_epochs: int,
    validate: bool = True,
) -> pl.Trainer:
    """``cfg.trainer``'s Trainer arguments instantiated (its ``_target_``, which the schema allows
    to be lightning.pytorch.Trainer only), with precision and determinism resolved for this
    machine and what the pipeline fixes."""
    on_gpu = uses_gpu(cfg)
    precision = resolve_precision(cfg)
    if precision == "16-mixed" and cfg.trainer.gradient_clip_val and cfg.optimizer.get("fused"):
        # Lightning cannot clip what a fused step unscales inside itself (fp16's loss scaling).
        raise ConfigError("trainer.gradient_clip_val needs optimizer.fused=false under fp16 "
                          "mixed precision (trainer.precision is or resolves to 16-mixed): set "
                          "optimizer.fused=false, or drop the clipping")
    arguments = OmegaConf.masked_copy(cfg.trainer, list(TRAINER_ARGUMENTS))
    return instantiate(
        arguments,
        max_epochs=max_epochs,
        precision=precision,
        # Some CUDA kernels have no deterministic version: warn there instead of failing.
        deterministic=("warn" if on_gpu else True) if cfg.trainer.deterministic else False,
        callbacks=callbacks,
        enable_progress_bar=bool(cfg.trainer.progress_bar),
        **({} if validate else {"limit_val_batches": 0}),
        **FIXED,
        _convert_="all",
    )
