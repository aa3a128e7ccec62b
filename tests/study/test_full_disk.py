"""A disk that fills: the state directory on a small tmpfs the test mounts and fills. Trials that
find no space fail with the path in one line (no SIGBUS from a memory map), the sweep stops
after sweep.max_consecutive_failures of them, no cache entry is left torn, and once space is
freed the same command completes the study."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from optuna.trial import TrialState

from pipeline.config import PROJECT_ROOT
from pipeline.study.budget import progress
from tests.sweep_store import study_of

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


@pytest.fixture
def small_disk(small_tmpfs):
    return small_tmpfs("48m")


def sweep(overrides: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.sweep", *overrides], cwd=PROJECT_ROOT,
                          env=ENV, capture_output=True, text=True, timeout=900)


def test_a_full_disk_fails_trials_cleanly_stops_the_sweep_and_the_command_then_completes(
        small_disk, tmp_path, resnet18_weights):
    space = tmp_path / "lr.yaml"
    space.write_text("params:\n  optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, "
                     "log: true}\n")
    base = [f"state_dir={small_disk}", "backbone=resnet18", "dataset.image_size=64",
            "dataset.num_images=240", "trainer.max_epochs=1", "trainer.progress_bar=false",
            "tracking.log_model=false", "trainer.feature_cache=true", "sweep.pruner=none",
            f"sweep.space={space}", "sweep.sampler=random", "sweep.max_consecutive_failures=2",
            f"backbone.weights_path={resnet18_weights}"]
    # The stores, the decode cache and a first trial, frozen at depth 4: the later trials freeze
    # 2, whose feature-cache entry (4.7 MB of training features) is new.
    first = sweep([*base, "sweep.n_trials=1", "backbone.freeze_depth=4"])
    assert first.returncode == 0, first.stderr[-3000:]
    overrides = [*base, "sweep.n_trials=6", "backbone.freeze_depth=2"]
    free = os.statvfs(small_disk)
    filler = small_disk / "filler"
    with open(filler, "wb") as fh:  # all but 2.5 MB: the stores take their small writes
        os.posix_fallocate(fh.fileno(), 0, free.f_bavail * free.f_frsize - 2_500_000)

    full = sweep(overrides)
    assert full.returncode == 1, full.stdout[-3000:] + full.stderr[-3000:]
    assert "Bus error" not in full.stderr and "SIGBUS" not in full.stderr
    assert "2 consecutive trials failed with the same error" in full.stderr
    failed = [t for t in study_of(overrides).trials if t.state == TrialState.FAIL]
    assert len(failed) == 2
    for trial in failed:
        error = trial.user_attrs["error"]
        assert error.count("\n") == 0 and "no space left on the device for" in error
        assert str(small_disk) in error  # the path, named
    for entry in small_disk.rglob("*.npy"):  # nothing torn is published
        assert np.load(entry, mmap_mode="r").shape[0] > 0

    filler.unlink()
    done = sweep(overrides)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    study = study_of(overrides)
    assert progress(study)[0] == 6
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 4  # 1 + 3 after
    assert not list(Path(small_disk).rglob("*.tmp"))
