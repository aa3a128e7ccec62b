"""The sweep stage: search spaces, Optuna storage, sampler, pruner, trial budget, the study loop."""
