"""The naive peer of ``time_to_naive_best``: Optuna's PyTorch Lightning example
(optuna-examples, pytorch/pytorch_lightning_simple.py) written as users write it, on our images.

A LightningModule around the timm backbone, a torchvision ``ImageFolder`` that opens and decodes
every PNG with PIL in every epoch, ``optuna.create_study`` with the TPE sampler and no pruner,
``MLflowCallback`` logging each trial, no early stopping, no caches; a trial's value is
``trainer.callback_metrics`` after its last epoch, as in the example. Nothing of the pipeline runs
here: only the space it searches is read from it, so both search the same one.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

from pipeline.config import PipelineError

# The space's keys the peer knows how to apply (a freeze depth is searched on pretrained weights
# only, which the offline bench does not have).
KNOWN = {"optimizer.lr", "dataset.batch_size"}


def run_naive(root: Path, state: Path, backbone: str, params: dict[str, dict[str, Any]],
              epochs: int, trials: int, seed: int, metric: str = "val_auroc"
              ) -> dict[str, Any]:
    """Run the naive study over ``root/{train,val}/<class>/*.png``: its wall time, each trial's
    value and when it completed (seconds from the start), and its best value."""
    import lightning.pytorch as pl
    import optuna
    import timm
    import torch
    import torch.nn.functional as F
    import torchmetrics
    from optuna_integration.mlflow import MLflowCallback
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    unknown = set(params) - KNOWN
    if unknown:
        raise PipelineError(f"the naive profile cannot search {sorted(unknown)}: it knows "
                            f"{sorted(KNOWN)} (random weights leave the freeze depth out)")
    classes = sorted(p.name for p in (root / "train").iterdir())
    state.mkdir(parents=True, exist_ok=True)  # the MLflow store's folder

    class LightningNet(pl.LightningModule):
        def __init__(self, lr: float) -> None:
            super().__init__()
            self.model = timm.create_model(backbone, pretrained=False,
                                           num_classes=len(classes))
            self.lr = lr
            self.auroc = torchmetrics.AUROC(task="multiclass", num_classes=len(classes),
                                            average="macro")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return F.cross_entropy(self(x), y)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.auroc.update(self(x).softmax(dim=1), y)
            self.log(metric, self.auroc)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.model.parameters(), lr=self.lr)

    class ImageFolderDataModule(pl.LightningDataModule):
        def __init__(self, batch_size: int) -> None:
            super().__init__()
            self.batch_size = batch_size
            self.transform = transforms.Compose([
                transforms.Grayscale(num_output_channels=3), transforms.ToTensor(),
                transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])

        def train_dataloader(self) -> DataLoader:
            data = datasets.ImageFolder(str(root / "train"), transform=self.transform)
            return DataLoader(data, batch_size=self.batch_size, shuffle=True)

        def val_dataloader(self) -> DataLoader:
            data = datasets.ImageFolder(str(root / "val"), transform=self.transform)
            return DataLoader(data, batch_size=self.batch_size, shuffle=False)

    def suggest(trial: optuna.Trial, key: str) -> Any:
        spec = params[key]
        if spec["type"] == "categorical":
            return trial.suggest_categorical(key, list(spec["choices"]))
        return trial.suggest_float(key, float(spec["low"]), float(spec["high"]),
                                   log=bool(spec.get("log", False)))

    def objective(trial: optuna.Trial) -> float:
        lr = suggest(trial, "optimizer.lr") if "optimizer.lr" in params else 1e-3
        batch_size = suggest(trial, "dataset.batch_size") if "dataset.batch_size" in params \
            else 32
        trainer = pl.Trainer(logger=True, enable_checkpointing=False, max_epochs=epochs,
                             accelerator="auto", devices=1, enable_progress_bar=False,
                             enable_model_summary=False, default_root_dir=str(state))
        trainer.fit(LightningNet(lr), datamodule=ImageFolderDataModule(int(batch_size)))
        return trainer.callback_metrics[metric].item()

    pl.seed_everything(seed, verbose=False)
    completed: list[tuple[float, float]] = []  # (seconds from the start, value)
    start = time.perf_counter()

    def stamp(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.value is not None:
            completed.append((time.perf_counter() - start, float(trial.value)))

    # MLflowCallback makes its store the process-wide one (MLFLOW_TRACKING_URI and mlflow's
    # default): put both back, or every later store of this process would be the peer's.
    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with warnings.catch_warnings():  # Lightning's advice on workers and logging, as users
            warnings.simplefilter("ignore")  # see, and MLflowCallback's deprecation
            mlflc = MLflowCallback(tracking_uri=f"sqlite:///{state / 'mlflow.db'}",
                                   metric_name=metric)
            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(
                seed=seed), pruner=optuna.pruners.NopPruner(), study_name="naive")
            study.optimize(objective, n_trials=trials, callbacks=[mlflc, stamp])
    finally:
        restore_tracking_uri(before)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "best": float(study.best_value), "completed": completed,
            "trials": len(study.trials)}


def restore_tracking_uri(before: str | None) -> None:
    """MLFLOW_TRACKING_URI and mlflow's process-wide tracking URI as they were before (None:
    neither set; mlflow then unsets the variable too)."""
    import mlflow

    mlflow.set_tracking_uri(before)
