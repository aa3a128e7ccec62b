"""Select the best CNN of the sweeps: ``python -m pipeline.select_best [hydra overrides]``.

Competes the COMPLETE trial runs of one dataset and split (``select.*``), tests each backbone's
best (and the best recipe's) once as it would be served, prints the comparison table, what it
supports and its limitations, registers the winner as ``<select.model_name>@champion`` with its
temperature and threshold. LAST line: ``{"champion_run_id", "backbone", "metric", "value",
"model_name", "version", "table", "cv_folds", "operating_point", "n_replicates",
"bootstrap_unit", "paired_test", "test_uses", "search_gain_test", "search_gain_val",
"calibration", "limitations"}``. Exit status: 0 selected, 2 nothing to compare or bad input.
"""

from __future__ import annotations

import os

from pipeline.common.cli import print_json_line, run
from pipeline.config import compose
from pipeline.runs.context import open_context
from pipeline.selection.champion import select_champion


def main(argv: list[str]) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    cfg = compose(argv)
    ctx = open_context(cfg, data=False, missing="no runs to compare")  # each run's own data
    summary = select_champion(ctx, cfg, argv)
    print_json_line(summary)
    return 0


if __name__ == "__main__":
    run(main)
