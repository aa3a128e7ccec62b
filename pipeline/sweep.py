"""Search hyperparameters: ``python -m pipeline.sweep [hydra overrides]``.

Runs (or resumes, or joins) the Optuna study ``sweep.study_name`` until it holds
``sweep.n_trials`` finished trials. LAST line: ``{"study_name", "storage", "parent_run_id",
"n_complete", "n_pruned", "n_fail", "best_value", "best_params", "best_run_id",
"stop_reason"}``. Exit status: 0 done; 1 failed (no trial completed or was pruned, trials kept
failing with one error, or a bug, whose traceback is printed); 2 bad input; 130 interrupted.
"""

from __future__ import annotations

import sys

from pipeline.common.cli import print_json_line, run
from pipeline.config import compose
from pipeline.runs.context import open_context
from pipeline.runs.transfer import with_transfer
from pipeline.study.loop import SweepFailed, run_study
from pipeline.study.plan import plan_study
from pipeline.study.storage import setup_lock
from pipeline.training.signals import Interrupted, graceful_interrupts


def main(argv: list[str]) -> int:
    cfg, argv = with_transfer(compose(argv), argv)  # backbone.weights=run:... named and fetched
    plan = plan_study(cfg, argv)  # a bad space or sweep.* setting stops here, before any work
    with graceful_interrupts():
        try:
            with setup_lock(cfg):  # workers started together create the stores one at a time
                ctx = open_context(plan.trial_cfg)  # the data every trial trains on, loaded once
            summary, code = run_study(ctx, plan), 0
        except Interrupted as exc:  # before the first trial (loading data, opening the stores)
            raise KeyboardInterrupt(str(exc)) from exc
        except SweepFailed as exc:
            print(f"error: the sweep failed: {exc}", file=sys.stderr, flush=True)
            summary, code = exc.summary, 1
    print_json_line(summary)
    return code


if __name__ == "__main__":
    run(main)
