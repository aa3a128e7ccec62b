"""The study stage (what `python -m pipeline.sweep` runs): search spaces, Optuna storage, sampler,
pruner, trial budget, the trial objective, the study loop and its MLflow bookkeeping."""
