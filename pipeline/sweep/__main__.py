"""Search one backbone's hyperparameters: ``python -m pipeline.sweep [hydra overrides]``.

Runs (or resumes, or joins) the Optuna study ``sweep.study_name`` until it holds
``sweep.n_trials`` finished trials. LAST line: ``{"study_name", "storage", "parent_run_id",
"n_complete", "n_pruned", "n_fail", "best_value", "best_params", "best_run_id"}``.
"""

from __future__ import annotations

from pipeline.cli import print_json_line, run
from pipeline.config import compose
from pipeline.sweep.loop import run_study
from pipeline.training.signals import Interrupted, graceful_interrupts


def main(argv: list[str]) -> int:
    cfg = compose(argv)
    with graceful_interrupts():
        try:
            summary = run_study(cfg, argv)
        except Interrupted as exc:  # before the first trial (loading data, opening the stores)
            raise KeyboardInterrupt(str(exc)) from exc
    print_json_line(summary)
    return 0


if __name__ == "__main__":
    run(main)
