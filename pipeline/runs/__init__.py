"""Orchestration: one training recorded as one MLflow run (a single split or k folds), a logged
run re-run, a logged model evaluated on another dataset. Above training and tracking, which
know nothing of each other's purpose."""
