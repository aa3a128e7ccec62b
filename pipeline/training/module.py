"""The LightningModule: losses (cross-entropy, SupCon joint or two-stage), optimiser, metrics.

The network (``pipeline.models``) knows nothing of training; this module knows nothing of where
data comes from (its ``inputs`` say how the network finishes from what the loaders serve).
Validation metrics are logged under their MLflow names (``val_auroc`` ...) so early stopping,
the best weights and a pruning callback all read the same values.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from timm.optim import param_groups_weight_decay
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from pipeline.common.errors import PipelineError
from pipeline.common.faults import fault_point
from pipeline.config.targets import instantiate
from pipeline.models import ChestXrayNet
from pipeline.models.losses import SupConLoss
from pipeline.training.features.inputs import Inputs
from pipeline.training.metrics import ClassificationMetrics

# What a stage of training optimises: the classifier (CE, plus SupCon in joint mode) or the
# contrastive pre-training of loss.mode=two_stage (SupCon only).
STAGES = ("classify", "pretrain")


class NonFiniteLoss(PipelineError):
    """The loss became NaN or inf: the run stops and is marked FAILED with this reason."""


class ChestXrayModule(pl.LightningModule):
    def __init__(
        self,
        cfg: DictConfig,
        net: ChestXrayNet,
        num_classes: int,
        positive_index: int | None,
        class_weights: Tensor | None = None,
        stage: str = "classify",
        inputs: Inputs | None = None,
    ) -> None:
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        self.cfg = cfg
        self.net = net
        self.stage = stage
        self.num_classes = int(num_classes)
        self.supcon_weight = 0.0
        self.supcon: SupConLoss | None = None
        if cfg.loss.name == "supcon":
            self.supcon = SupConLoss(temperature=float(cfg.loss.temperature))
            joint = cfg.loss.mode == "joint"
            self.supcon_weight = float(cfg.loss.weight) if joint else 0.0
        self.label_smoothing = float(cfg.loss.get("label_smoothing", 0.0))
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.val_metrics = ClassificationMetrics(self.num_classes, positive_index, "val_")
        self.train_accuracy = MulticlassAccuracy(self.num_classes, average="micro")
        # Means weighted by batch size, as Lightning's own epoch aggregation weighs them.
        self.train_loss = MeanMetric()
        self.val_loss = MeanMetric()
        # What the loaders serve (images, or cached frozen features) and how the net finishes.
        self.inputs = inputs

    # ---- forward -------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _feature_map(self, x: Tensor, training: bool) -> Tensor:
        """The backbone's last feature map for a batch of images, or of cached features."""
        if self.inputs is None:
            return self.net.forward_features(x)
        return self.inputs.feature_map(self.net, x, training)

    def _ce(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(
            logits.float(), y, weight=self.class_weights, label_smoothing=self.label_smoothing
        )

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        if self.global_step == 1:  # the second batch: one optimiser step taken, mid-training
            fault_point("epoch")
        x, y = batch
        two_views = x.dim() == 5
        if two_views:  # (B, 2, 1, S, S): both views through the network, labels repeated
            batch_size = x.shape[0]
            x = x.flatten(0, 1)
            y_all = y.repeat_interleave(2)
        else:
            y_all = y
        features = self._feature_map(x, training=True)
        loss = torch.zeros((), device=x.device)
        if self.stage == "classify":
            logits = self.net.classify(features)
            loss = self._ce(logits, y_all)
            self.train_accuracy.update(logits.detach(), y_all)
        if self.supcon is not None and two_views and (
            self.stage == "pretrain" or self.supcon_weight > 0
        ):
            embeddings = self.net.embed(features).float().view(batch_size, 2, -1)
            contrastive = self.supcon(embeddings, y)
            loss = contrastive if self.stage == "pretrain" else loss + (
                self.supcon_weight * contrastive
            )
        if not torch.isfinite(loss):
            raise NonFiniteLoss(
                f"loss became {loss.item()} at epoch {self.current_epoch}, batch {batch_idx} "
                f"(optimizer.lr={self.cfg.optimizer.lr}): lower the learning rate or set "
                "trainer.gradient_clip_val"
            )
        self.train_loss.update(loss.detach(), weight=y.shape[0])
        self.log(self.loss_name, loss.detach(), prog_bar=True, batch_size=y.shape[0])
        return loss

    @property
    def loss_name(self) -> str:
        return "train_loss" if self.stage == "classify" else "pretrain_loss"

    def on_train_epoch_start(self) -> None:
        self.train_accuracy.reset()
        self.train_loss.reset()

    def train_epoch_metrics(self) -> dict[str, float]:
        """This epoch's mean training loss (and accuracy when classifying), so far: read at the
        end of validation, before Lightning's own epoch-end aggregation has run."""
        if self.train_loss.update_count == 0:
            return {}
        values = {self.loss_name: float(self.train_loss.compute())}
        if self.stage == "classify":
            values["train_accuracy"] = float(self.train_accuracy.compute())
        return values

    # ---- validation ----------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self.val_metrics.reset()
        self.val_loss.reset()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        if self.stage == "pretrain":
            return
        logits = self.net.classify(self._feature_map(x, training=False)).float()
        self.val_loss.update(F.cross_entropy(logits, y), weight=y.shape[0])
        self.val_metrics.update(logits.softmax(dim=1), y)

    def on_validation_epoch_end(self) -> None:
        if self.stage == "pretrain" or self.val_loss.update_count == 0:
            return
        values = self.val_metrics.compute()
        values["val_loss"] = float(self.val_loss.compute())
        for name, value in values.items():
            # An undefined metric (one class absent) is NaN; checkpointing treats it as worst.
            self.log(name, value if math.isfinite(value) else float("nan"), prog_bar=(
                name in ("val_loss", self.cfg.trainer.monitor)))

    # ---- optimisation --------------------------------------------------------------------
    def configure_optimizers(self):  # noqa: ANN201 (Lightning's own union type)
        if not any(p.requires_grad for p in self.parameters()):
            raise PipelineError(
                "nothing to train: every parameter is frozen (lower backbone.freeze_depth)"
            )
        # No weight decay on normalisation weights and biases (timm's rule: 1-d parameters).
        decay = float(self.cfg.optimizer.get("weight_decay", 0.0) or 0.0)
        groups = [g for g in param_groups_weight_decay(self, weight_decay=decay) if g["params"]]
        optimizer = instantiate(self.cfg.optimizer)(groups)
        sched_cfg = self.cfg.scheduler.get("scheduler") if "scheduler" in self.cfg else None
        if sched_cfg is None or self.stage == "pretrain":
            return optimizer
        scheduler = instantiate(sched_cfg)(optimizer)
        config = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = str(self.cfg.trainer.monitor)
        return {"optimizer": optimizer, "lr_scheduler": config}

