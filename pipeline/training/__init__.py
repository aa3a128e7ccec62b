"""The training stage: the Lightning module, metrics, trainer, callbacks, feature cache, one fit."""
