"""SQLite stores shared by several processes: both stores in WAL mode, a lock held longer than
MLflow's own 20 s busy timeout waited out (the call retried), and a fresh MLflow store opened by
another client at the moment this project creates it: both clients succeed, in either order."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from pipeline.config import PROJECT_ROOT, compose
from pipeline.study.storage import make_storage
from pipeline.tracking.store import open_store


def _journal_mode(path: Path) -> str:
    con = sqlite3.connect(path)
    try:
        return str(con.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        con.close()


def test_both_stores_are_in_wal_mode(state_dir: Path) -> None:
    cfg = compose([f"state_dir={state_dir}"])
    make_storage(cfg)
    open_store(cfg)
    assert _journal_mode(state_dir / "optuna.db") == "wal"
    assert _journal_mode(state_dir / "mlflow.db") == "wal"


@pytest.mark.slow
def test_a_write_waits_out_a_lock_held_longer_than_mlflows_busy_timeout(state_dir: Path) -> None:
    store = open_store(compose([f"state_dir={state_dir}"]))
    run_id = store.client.create_run(store.experiment_id).info.run_id
    holder = sqlite3.connect(state_dir / "mlflow.db", isolation_level=None,
                             check_same_thread=False)
    # Another worker's long write: longer than the 20 s busy timeout MLflow sets on its sessions.
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(25.0, lambda: holder.execute("COMMIT"))
    release.start()
    started = time.monotonic()
    try:
        store.log(run_id, metrics={"val_auroc": 0.5})
    finally:
        release.join()
        holder.close()
    assert time.monotonic() - started >= 24.0  # it waited for the lock instead of failing
    assert store.client.get_run(run_id).data.metrics["val_auroc"] == 0.5


_RACER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    role, folder, delays = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    from mlflow import MlflowClient
    from pipeline.config import compose
    from pipeline.tracking.store import open_store
    other = "theirs" if role == "ours" else "ours"
    results = []
    for r, delay in enumerate(delays):
        state = folder / f"round{r}"
        (folder / f"{role}-{r}").touch()
        while not (folder / f"{other}-{r}").exists():  # both at once, then this one's delay
            time.sleep(0.001)
        time.sleep(delay)
        try:
            if role == "ours":  # the project's own open: creates the store, then its experiment
                open_store(compose([f"state_dir={state}"]))
            else:  # any other client: make ui, a script
                MlflowClient(tracking_uri=f"sqlite:///{state / 'mlflow.db'}").search_experiments()
            results.append("ok")
        except Exception as exc:
            results.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    print(json.dumps(results))
""")


@pytest.mark.slow
def test_a_fresh_store_raced_by_another_client_opens_for_both(tmp_path: Path) -> None:
    # (ours, theirs) delays: at once; theirs mid our creation; theirs after; ours mid theirs.
    rounds = [(0.0, 0.0), (0.0, 1.0), (0.0, 6.0), (1.0, 0.0)]
    for r in range(len(rounds)):
        (tmp_path / f"round{r}").mkdir()
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    procs = {
        role: subprocess.Popen(
            [sys.executable, "-c", _RACER, role, str(tmp_path),
             json.dumps([pair[i] for pair in rounds])],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i, role in enumerate(("ours", "theirs"))
    }
    results = {}
    for role, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        results[role] = json.loads(out.strip().splitlines()[-1])
    assert results == {"ours": ["ok"] * len(rounds), "theirs": ["ok"] * len(rounds)}
    for r in range(len(rounds)):
        db = tmp_path / f"round{r}" / "mlflow.db"
        assert _journal_mode(db) == "wal"
        assert not list(db.parent.glob("*.tmp"))
