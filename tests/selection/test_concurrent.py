"""Two select_best processes on one store at once: one consistent champion. They are made to
race for real: both reach the registry lock at the same moment (a barrier), and whoever is
between the search for the run's model version and creating one stays there 3 s (a pause). With
the lock the second searches after the first created the version and reuses it; without it both
find none and create two."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.config import PROJECT_ROOT
from tests.sweep_store import sweep_store

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def test_two_selections_at_once_agree_on_one_champion(tmp_path_factory, tmp_path):
    store = sweep_store(tmp_path_factory.mktemp("sweep"))
    name = "xray-two-at-once"
    command = [sys.executable, "-m", "pipeline.select_best", *store.overrides,
               "select.bootstrap=100", f"select.model_name={name}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PIPELINE_BARRIER=f"registry_lock:2:{tmp_path}",
               PIPELINE_PAUSE="register_search:3")
    procs = [subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert len(list(tmp_path.glob("registry_lock.*"))) == 2  # both met at the lock
    versions = store.client.search_model_versions(f"name = '{name}'")
    assert len(versions) == 1, [(v.version, v.run_id) for v in versions]  # reused, not doubled
    champion = store.client.get_model_version_by_alias(name, "champion")
    best = max((store.client.get_run(i) for ids in store.trials.values() for i in ids),
               key=lambda r: (r.data.metrics["best_val_auroc"], -r.data.metrics["best_val_loss"],
                              -r.info.start_time))
    assert champion.run_id == best.info.run_id  # the alias on the better run
    assert champion.tags["run_id"] == champion.run_id  # a fully tagged version
    selections = store.client.search_runs([store.experiment_id], "tags.role = 'selection'")
    assert len(selections) == 2 and {r.info.status for r in selections} == {"FINISHED"}
    assert {r.data.tags["model_version"] for r in selections} == {str(versions[0].version)}
