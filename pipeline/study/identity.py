"""What a study searches: the data its trials train on (the data fingerprint) and the settings
that change what a trial's value means. A study records its identity when it is created; the
default study name carries it (new data or an other image size: a study of its own), and a
worker whose identity differs from the stored one is refused instead of joining trials of
another problem (one TPE model and one pruner over two problems)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from pipeline.common.errors import ConfigError
from pipeline.data.hashing import digest_strings
from pipeline.study.space import SearchSpace

# The config keys (a group: all its keys) that change what a trial's value means, read from the
# config a trial runs (space's fixed keys and command line applied). Left out on purpose: sweep.*
# (how the search runs: budget, sampler, pruner, stopping), seed (replicates of one problem),
# paths and machine keys (dataset.root: the fingerprint stands for the content; devices, workers,
# caches), so that workers on several machines agree.
IDENTITY_KEYS = (
    "dataset.image_size", "dataset.batch_size", "dataset.sampler",
    "backbone.name", "backbone.pretrained",
    "head", "loss", "augmentation", "optimizer", "scheduler",
    "trainer.max_epochs", "trainer.early_stopping_patience", "trainer.limit_train_batches",
    "trainer.limit_val_batches", "trainer.gradient_clip_val",
    "objective.metric", "objective.direction", "objective.cv_folds",
)
SPACE = "space"  # the searched distributions (as this study searches them), beside the keys
ATTR = "identity"  # the study's user attribute holding it


@dataclass(frozen=True)
class StudyIdentity:
    fingerprint: str  # the data's (pipeline.data.bundle)
    settings: dict[str, str]  # IDENTITY_KEYS and SPACE -> their value as canonical JSON

    @property
    def digest(self) -> str:
        return digest_strings([json.dumps(self.settings, sort_keys=True)])[:16]

    @property
    def short(self) -> str:
        """What the default study name carries: the short data fingerprint and settings digest."""
        return f"{self.fingerprint[:8]}-{self.digest[:8]}"

    def attrs(self) -> dict[str, Any]:
        return {"data_fingerprint": self.fingerprint, "settings": self.settings,
                "uid": uuid.uuid4().hex}

    def differences(self, stored: dict[str, Any]) -> list[str]:
        """``key: stored there, this here`` for each difference from a stored identity."""
        out = []
        if stored.get("data_fingerprint") != self.fingerprint:
            out.append(f"data fingerprint: {stored.get('data_fingerprint')} there, "
                       f"{self.fingerprint} here")
        theirs = dict(stored.get("settings") or {})
        for key in sorted(set(theirs) | set(self.settings)):
            if theirs.get(key) != self.settings.get(key):
                out.append(f"{key}: {_short(theirs.get(key))} there, "
                           f"{_short(self.settings.get(key))} here")
        return out


def _short(value: str | None) -> str:
    text = "unset" if value is None else value
    return text if len(text) <= 80 else text[:77] + "..."


def identify(trial_cfg: DictConfig, space: SearchSpace, fingerprint: str) -> StudyIdentity:
    """The identity of a study whose trials run ``trial_cfg`` plus ``space``'s values on the data
    of ``fingerprint``."""
    settings = {}
    for key in IDENTITY_KEYS:
        value = OmegaConf.select(trial_cfg, key, default=None)
        if isinstance(value, DictConfig):
            value = OmegaConf.to_container(value, resolve=True)
        settings[key] = json.dumps(value, sort_keys=True, default=str)
    settings[SPACE] = json.dumps(space.params, sort_keys=True, default=str)
    return StudyIdentity(fingerprint, settings)


def claim(study: optuna.Study, identity: StudyIdentity) -> dict[str, Any]:
    """Record ``identity`` on a study that has none (a new study, or one created before
    identities were recorded), else check it is the stored one: a difference is refused in one
    line naming it. Returns the stored attributes (their ``uid`` tags this study's runs)."""
    stored = study.user_attrs.get(ATTR)
    if stored is None:
        # Two workers creating one study at once: the first write wins (Optuna ignores the
        # second insert), and both read back the same record.
        study.set_user_attr(ATTR, identity.attrs())
        stored = study.user_attrs[ATTR]
    differences = identity.differences(stored)
    if differences:
        raise ConfigError(
            f"study '{study.study_name}' was created for other trials ("
            f"{'; '.join(differences)}): it is not resumed or joined with these; drop "
            "sweep.study_name for a study of these settings, or name a new one with "
            "sweep.study_name=<name>")
    return dict(stored)


def study_uid(study: optuna.Study) -> str:
    """The study's own id in its storage (a study of the same name in another storage has
    another): the tag that proves a run belongs to this study."""
    return str((study.user_attrs.get(ATTR) or {}).get("uid", ""))
