"""One training = one MLflow run: data -> model -> Lightning fit -> best model -> metrics/artifacts.

``run_training`` is what ``pipeline.train``, every sweep trial and every re-run call. It never
raises for a failed training: the run is closed FAILED (NaN loss, bad config, out of memory),
KILLED (pruned, interrupted) or FINISHED, and the outcome comes back as a ``TrainResult``.
SIGINT/SIGTERM (through ``graceful_interrupts``) close the run KILLED and are re-raised.
"""

from __future__ import annotations

import copy
import gc
import json
import logging
import os
import shutil
import signal
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import optuna
import torch
from lightning.pytorch.callbacks import EarlyStopping
from omegaconf import DictConfig, OmegaConf

from pipeline import tracking
from pipeline.config import one_line, state_dir, to_yaml
from pipeline.data import ChestXrayDataModule, DataBundle, load_data
from pipeline.features import FeatureDataModule, features_dir, with_feature_cache
from pipeline.features import describe as describe_feature_use
from pipeline.lit_module import ChestXrayModule
from pipeline.metrics import score
from pipeline.models import ChestXrayNet, build_model
from pipeline.reports import write_curves, write_reports

log = logging.getLogger(__name__)
# Lightning's start-up chatter (tips, "100% of batches will be used") buries the progress output.
for _name in ("lightning.pytorch.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero"):
    logging.getLogger(_name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
# Frozen stages stay in eval mode on purpose (BatchNorm statistics of the frozen part).
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")

# Optuna trial state of a run, and the MLflow status it closes with.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED", "INTERRUPTED": "KILLED"}
MAX_TAG_LENGTH = 5000
# The last network built in this process, untrained, with the RNG state its build left behind.
_TEMPLATE: dict[str, tuple[ChestXrayNet, torch.Tensor]] = {}


class Interrupted(BaseException):
    """SIGINT/SIGTERM during a training: not an Exception, so nothing on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


@contextmanager
def graceful_interrupts() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into ``Interrupted`` (Lightning would turn Ctrl-C into sys.exit)."""

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    try:
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@dataclass
class TrainResult:
    run_id: str
    state: str  # COMPLETE | PRUNED | FAIL | INTERRUPTED
    metrics: dict[str, float] = field(default_factory=dict)
    objective: float | None = None
    error: str | None = None
    epochs: int = 0

    @property
    def status(self) -> str:
        """The MLflow status the run was closed with."""
        return RUN_STATUS[self.state]


class MlflowEpochLogger(pl.Callback):
    """Per-epoch train_* and val_* metrics to the run, before pruning or early stopping act."""

    def __init__(self, mlflow_client: Any, run_id: str):
        self.client = mlflow_client
        self.run_id = run_id
        self.history: dict[str, list[float]] = {}
        self.epoch_offset = 0  # two-stage training: classifier epochs follow pre-training ones
        self._logged: set[int] = set()

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._log_epoch(trainer, module)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._log_epoch(trainer, module)  # epochs without validation (pre-training)

    def _log_epoch(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        step = self.epoch_offset + trainer.current_epoch
        if step in self._logged:
            return
        self._logged.add(step)
        values = dict(module.train_epoch_metrics())
        values.update(
            {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val_")}
        )
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)
        log_metrics(self.client, self.run_id, values, step)


def log_metrics(mlflow_client: Any, run_id: str, values: Mapping[str, float], step: int) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
    if metrics:
        mlflow_client.log_batch(run_id, metrics=metrics, synchronous=True)


def start_run(
    cfg: DictConfig,
    bundle: DataBundle,
    mlflow_client: Any,
    *,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """A new run with the config as params and the standard tags; config and split logged."""
    from mlflow.entities import Param

    all_tags = {
        "backbone": str(cfg.backbone.name),
        "dataset": str(cfg.dataset.name),
        "data_fingerprint": bundle.fingerprint,
        "git_commit": tracking.git_commit(),
        "role": "train",
        "image_size": str(cfg.dataset.image_size),
        "seed": str(cfg.seed),
        # CPU kernels split work by thread count: a re-run repeats the run exactly with as many.
        "torch_threads": str(torch.get_num_threads()),
        **(tags or {}),
    }
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = mlflow_client.create_run(
        tracking.experiment_id(cfg, mlflow_client), run_name=run_name, tags=all_tags
    )
    run_id = run.info.run_id
    params = [Param(k, v) for k, v in tracking.flat_params(cfg).items()]
    for i in range(0, len(params), 100):  # MLflow's batch limit
        mlflow_client.log_batch(run_id, params=params[i : i + 100], synchronous=True)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.yaml").write_text(to_yaml(cfg))
        bundle.write_manifest(Path(tmp) / "split_manifest.csv")
        mlflow_client.log_artifacts(run_id, tmp)
    return run_id


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


def make_trainer(
    cfg: DictConfig,
    callbacks: list[pl.Callback],
    max_epochs: int,
    validate: bool = True,
) -> pl.Trainer:
    on_gpu = uses_gpu(cfg)
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator=str(cfg.trainer.accelerator),
        devices=cfg.trainer.devices,
        precision=resolve_precision(cfg),
        # Some CUDA kernels have no deterministic version: warn there instead of failing.
        deterministic=("warn" if on_gpu else True) if cfg.trainer.deterministic else False,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,  # BestWeights keeps the best epoch's weights in memory
        enable_progress_bar=bool(cfg.trainer.progress_bar),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        gradient_clip_val=cfg.trainer.get("gradient_clip_val"),
        limit_train_batches=cfg.trainer.get("limit_train_batches", 1.0),
        limit_val_batches=cfg.trainer.get("limit_val_batches", 1.0) if validate else 0,
    )


def monitor_mode(cfg: DictConfig) -> str:
    mode = str(cfg.trainer.get("monitor_mode", "auto"))
    if mode == "auto":
        return "min" if "loss" in str(cfg.trainer.monitor) else "max"
    return mode


def run_training(
    cfg: DictConfig,
    *,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    trial: optuna.trial.Trial | None = None,
    callbacks: Sequence[pl.Callback] = (),
) -> TrainResult:
    """Train ``cfg`` once and record it as one MLflow run (see module docstring).

    ``callbacks`` join the trainer of the classifier stage (e.g. to time its epochs).
    """
    mlflow_client = tracking.client(cfg)
    bundle = load_data(cfg)
    run_id = start_run(
        cfg, bundle, mlflow_client, run_name=run_name, parent_run_id=parent_run_id, tags=tags
    )
    result = TrainResult(run_id=run_id, state="FAIL")
    workdir = Path(tempfile.mkdtemp(prefix=f"run-{run_id}-", dir=state_dir(cfg)))
    try:
        result = _fit_and_record(cfg, bundle, mlflow_client, run_id, trial, workdir,
                                 list(callbacks))
    except optuna.TrialPruned as exc:
        result.state, result.error = "PRUNED", str(exc)
        result.epochs = _epochs_logged(mlflow_client, run_id, cfg)
    except Interrupted as exc:
        result.state, result.error = "INTERRUPTED", str(exc)
        _close(mlflow_client, result)
        raise
    except Exception as exc:  # noqa: BLE001 -- any failure of one training is that run's FAIL
        result.state, result.error = "FAIL", f"{type(exc).__name__}: {one_line(exc)}"
        log.warning("run %s failed: %s", run_id, result.error)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        free_memory()
    _close(mlflow_client, result)
    return result


def _close(mlflow_client: Any, result: TrainResult) -> None:
    tags = {"state": result.state}
    if result.error:
        tags["error"] = result.error[:MAX_TAG_LENGTH]
        tags["mlflow.note.content"] = result.error[:MAX_TAG_LENGTH]
    for key, value in tags.items():
        mlflow_client.set_tag(result.run_id, key, value)
    mlflow_client.set_terminated(result.run_id, status=result.status)


def _epochs_logged(mlflow_client: Any, run_id: str, cfg: DictConfig) -> int:
    history = mlflow_client.get_metric_history(run_id, str(cfg.trainer.monitor))
    return len(history)


def free_memory() -> None:
    """Between trials: drop the last model's memory (a CUDA OOM must not doom the next trial).

    What survives a trial (imported modules, the data bundle, the study) is then frozen out of
    the cycle collector: a full collection over it took 0.4 s per trial, and the next trial's
    garbage is still collected (gc.freeze only skips objects that exist now).
    """
    gc.collect()
    gc.freeze()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def build_net(cfg: DictConfig, num_classes: int) -> ChestXrayNet:
    """``build_model`` once per process for a given architecture and seed, then copies.

    Call right after seeding: a copy of the untrained network built last (under the same seed)
    comes back with the RNG as that build left it, so later draws (dropout, shuffling) are those
    of a fresh build. The freeze depth is applied to the copy, so a sweep over it reuses one
    build; pre-trained weights are read once.
    """
    key = _template_key(cfg, num_classes)
    if key not in _TEMPLATE:
        _TEMPLATE.clear()  # one template at a time: memory stays one untrained network
        net = build_model(cfg, num_classes)
        _TEMPLATE[key] = (net, torch.get_rng_state())
    template, rng_after_build = _TEMPLATE[key]
    net = copy.deepcopy(template)
    torch.set_rng_state(rng_after_build)
    net.set_freeze_depth(int(cfg.backbone.freeze_depth))
    return net


def _template_key(cfg: DictConfig, num_classes: int) -> str:
    backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
    backbone.pop("freeze_depth", None)
    path = backbone.get("weights_path")
    if path and os.path.exists(path):
        stat = os.stat(path)
        backbone["weights_file"] = [stat.st_size, stat.st_mtime_ns]
    return json.dumps({
        "backbone": backbone,
        "head": OmegaConf.to_container(cfg.head, resolve=True),
        "loss": OmegaConf.to_container(cfg.loss, resolve=True),
        "image_size": int(cfg.dataset.image_size),
        "num_classes": int(num_classes),
        "seed": int(cfg.seed),
    }, sort_keys=True, default=str)


class BestWeights(pl.Callback):
    """The best epoch's weights on ``monitor``, kept in memory: ModelCheckpoint(save_top_k=1)
    without writing the whole network to disk at every improvement. Only what training can
    change is copied (trainable parameters, and buffers outside the frozen stages); a NaN value
    counts as the worst, and ties keep the earlier epoch."""

    def __init__(self, monitor: str, mode: str):
        self.monitor = monitor
        self.mode = mode
        self.best_value: float | None = None
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if not np.isfinite(value):
            value = -np.inf if self.mode == "max" else np.inf
        better = self.best_value is None or (
            value > self.best_value if self.mode == "max" else value < self.best_value)
        if better:
            self.best_value = value
            self.state = {k: v.detach().clone() for k, v in _changeable(module).items()}

    def restore(self, module: pl.LightningModule) -> bool:
        """Load the best weights into ``module``; False when no epoch was validated."""
        if self.state is None:
            return False
        module.load_state_dict(self.state, strict=False)
        return True


def _changeable(module: pl.LightningModule) -> dict[str, torch.Tensor]:
    """The state entries training can change: all but the frozen stages' parameters and buffers
    (frozen stages stay in eval mode, so even their BatchNorm statistics hold still)."""
    net = getattr(module, "net", None)
    frozen: tuple[str, ...] = ()
    if isinstance(net, ChestXrayNet):
        frozen = tuple(f"net.backbone.stages.{i}." for i in range(net.freeze_depth))
    return {k: v for k, v in module.state_dict(keep_vars=True).items()
            if not k.startswith(frozen)}


def _fit_and_record(
    cfg: DictConfig,
    bundle: DataBundle,
    mlflow_client: Any,
    run_id: str,
    trial: optuna.trial.Trial | None,
    workdir: Path,
    extra_callbacks: list[pl.Callback],
) -> TrainResult:
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    num_classes = len(bundle.classes)
    net = build_net(cfg, num_classes)
    if uses_gpu(cfg) and str(cfg.trainer.channels_last).lower() in ("auto", "true"):
        net = net.to(memory_format=torch.channels_last)  # NHWC convolutions on tensor cores
    mlflow_client.set_tag(run_id, "weights", net.weights)
    log_metrics(
        mlflow_client, run_id,
        {"trainable_params": net.trainable_params(), "total_params": net.total_params()}, 0,
    )
    positive_index = (
        bundle.classes.index(bundle.positive_class) if bundle.positive_class else None
    )
    class_weights = bundle.class_weights() if cfg.loss.get("class_weights") else None
    logger_cb = MlflowEpochLogger(mlflow_client, run_id)
    supcon = cfg.loss.name == "supcon"

    if supcon and cfg.loss.mode == "two_stage":
        # Stage 1: contrastive pre-training of backbone + projection on two views per image.
        pre = ChestXrayModule(cfg, net, num_classes, positive_index, class_weights, "pretrain")
        data = ChestXrayDataModule.from_config(cfg, bundle, two_views=True)
        make_trainer(cfg, [logger_cb], int(cfg.loss.pretrain_epochs), validate=False).fit(
            pre, datamodule=data
        )
        logger_cb.epoch_offset = int(cfg.loss.pretrain_epochs)
        # Stage 2: the classifier on the frozen, contrastively trained backbone.
        net.set_freeze_depth(net.num_stages)
        two_views = False
    else:
        two_views = supcon

    module = ChestXrayModule(cfg, net, num_classes, positive_index, class_weights, "classify")
    data = ChestXrayDataModule.from_config(cfg, bundle, two_views=two_views)
    # Keyed by the frozen weights' content, so contrastively pre-trained networks share it too.
    data = with_feature_cache(
        cfg, net, data, root=features_dir(state_dir(cfg)),
        device="cuda" if uses_gpu(cfg) else "cpu",
        autocast=autocast_dtype(resolve_precision(cfg)),
    )
    module.train_input_depth, module.eval_input_depth = data.train_depth, data.eval_depth
    mlflow_client.set_tag(run_id, "feature_cache", describe_feature_use(data))
    mode = monitor_mode(cfg)
    monitor = str(cfg.trainer.monitor)
    checkpoint = BestWeights(monitor, mode)
    callbacks: list[pl.Callback] = [logger_cb]
    if trial is not None:
        from optuna_integration import PyTorchLightningPruningCallback

        callbacks.append(PyTorchLightningPruningCallback(trial, monitor=monitor))
    patience = cfg.trainer.get("early_stopping_patience")
    if patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=int(patience)))
    callbacks.append(checkpoint)
    callbacks.extend(extra_callbacks)
    trainer = make_trainer(cfg, callbacks, int(cfg.trainer.max_epochs))
    trainer.fit(module, datamodule=data)
    epochs = trainer.current_epoch  # epochs completed

    checkpoint.restore(module)
    module.net.eval()
    device = trainer.strategy.root_device
    final: dict[str, float] = {}
    evaluated: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    splits = ["val", "test"] if cfg.get("evaluate_test") else ["val"]
    for split in splits:
        probs, target = predict_split(module.net, data, split, device)
        evaluated[split] = (probs, target)
        final.update(score(torch.from_numpy(probs), torch.from_numpy(target), positive_index,
                           f"{split}_"))
        final[f"{split}_loss"] = float(
            torch.nn.functional.nll_loss(
                torch.from_numpy(np.log(np.clip(probs, 1e-12, None))), torch.from_numpy(target)
            )
        )
    best_epoch = _best_epoch(logger_cb.history.get(monitor, []), mode)
    # Logged one step after the last epoch, so a run's latest val_* are its best model's.
    log_metrics(mlflow_client, run_id, {**final, "best_epoch": best_epoch},
                logger_cb.epoch_offset + epochs)

    out = workdir / "artifacts"
    write_curves(out, logger_cb.history)
    for split, (probs, target) in evaluated.items():
        prefix = "" if split == "val" else "test_"
        write_reports(out, probs, target, bundle.classes, positive_index, prefix)
    mlflow_client.log_artifacts(run_id, str(out))
    if cfg.tracking.get("log_model", True):
        log_model(module.net.cpu(), bundle, run_id)

    objective = final.get(monitor)
    return TrainResult(run_id=run_id, state="COMPLETE", metrics=final, objective=objective,
                       epochs=logger_cb.epoch_offset + epochs)


def _best_epoch(values: list[float], mode: str) -> int:
    if not values:
        return 0
    arr = np.asarray(values, dtype=float)
    arr = np.where(np.isfinite(arr), arr, -np.inf if mode == "max" else np.inf)
    return int(np.argmax(arr) if mode == "max" else np.argmin(arr))


@torch.no_grad()
def predict_split(
    net: ChestXrayNet, data: ChestXrayDataModule | FeatureDataModule, split: str,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and targets of one split, in order (no augmentation); from cached
    frozen features where ``data`` serves them."""
    net = net.to(device).eval()
    loader, start = data.prediction_loader(split), data.eval_depth
    probs, targets = [], []
    for x, y in loader:
        x = x.to(device)
        logits = net.classify(net.features_from(x, start)) if start else net(x)
        probs.append(logits.float().softmax(dim=1).cpu())
        targets.append(y)
    return torch.cat(probs).numpy(), torch.cat(targets).numpy()


class ProbabilityModel(torch.nn.Module):
    """What is logged as the run's model: uint8/float images (B, 1, S, S) -> class probabilities."""

    def __init__(self, net: ChestXrayNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).softmax(dim=1)


def log_model(net: ChestXrayNet, bundle: DataBundle, run_id: str) -> None:
    """The best model as an MLflow PyTorch model (exported program), loadable without this code."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    size = bundle.image_size
    wrapper = ProbabilityModel(net).eval()
    example = np.zeros((2, 1, size, size), dtype=np.float32)
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1, size, size))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(bundle.classes)))]),
    )
    metadata = {"classes": list(bundle.classes), "image_size": size,
                "positive_class": bundle.positive_class}
    with mlflow.start_run(run_id=run_id, nested=True):
        mlflow.pytorch.log_model(
            wrapper, name="model", input_example=example, signature=signature,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"], metadata=metadata,
        )

