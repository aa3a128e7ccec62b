"""The distributed path for real: a PostgreSQL cluster (.ci/postgres.sh), an MLflow tracking server
on it started by `make server`, and two sweep workers on one study, as if on two machines; and
`make sweep`'s launcher of several workers on one machine."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from pipeline.config import PROJECT_ROOT

N_TRIALS = 4
WORKERS = 2
SCRIPT = PROJECT_ROOT / ".ci" / "postgres.sh"
CLUSTERS: dict[str, str] = {}  # server URL -> its cluster directory (to restart it)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """``postgresql://postgres:<password>@127.0.0.1:<port>``, with databases optuna and mlflow."""
    port, password = _free_port(), secrets.token_hex(12)
    proc = subprocess.run(["bash", str(SCRIPT), "start", str(port), password],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        reason = f"PostgreSQL could not be started by {SCRIPT.name}: {proc.stderr.strip()[-800:]}"
        if proc.returncode == 3 and not _in_ci():  # not installed, and not installable here
            pytest.skip(reason)
        pytest.fail(reason)
    directory = proc.stdout.strip().splitlines()[-1]
    url = f"postgresql://postgres:{password}@127.0.0.1:{port}"
    CLUSTERS[url] = directory
    try:
        yield url
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", directory], timeout=120)


def start_server(port: int, backend: str, artifacts: Path, log_path: Path) -> subprocess.Popen:
    """`make server` on loopback, up and answering /health."""
    log = open(log_path, "a+")  # noqa: SIM115 -- closed with the server
    server = subprocess.Popen(
        ["make", "-s", "-o", ".venv/.installed", "server", "HOST=127.0.0.1", f"PORT={port}",
         f"BACKEND={backend}", f"ARTIFACTS={artifacts}", "ARGS=--workers 1"],
        cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    server.log = log
    deadline = time.time() + 180
    while True:
        if server.poll() is not None or time.time() > deadline:
            log.seek(0)
            pytest.fail(f"make server did not come up:\n{log.read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    server.log.close()


@pytest.fixture(scope="module")
def mlflow_server(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """`make server` on loopback, its store in PostgreSQL, artifacts served from a temp dir."""
    port = _free_port()
    artifacts = tmp_path_factory.mktemp("server-artifacts")
    server = start_server(port, f"{postgres}/mlflow", artifacts,
                          tmp_path_factory.mktemp("server") / "server.log")
    try:
        yield {"uri": f"http://127.0.0.1:{port}", "artifacts": Path(artifacts)}
    finally:
        stop_server(server)


@pytest.mark.slow
def test_two_workers_share_one_study_through_postgres_and_an_mlflow_server(
    postgres, mlflow_server, tiny_overrides, tmp_path
):
    storage = f"{postgres}/optuna"
    password = postgres.split(":")[2].split("@")[0]
    common = tiny_overrides(
        "trainer.max_epochs=1", "tracking.log_model=false", f"sweep.n_trials={N_TRIALS}",
        f"sweep.storage={storage}", f"tracking.uri={mlflow_server['uri']}",
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    workers = [
        # Each its own state dir, as on its own machine: only the two stores are shared.
        subprocess.Popen([sys.executable, "-m", "pipeline.sweep", *common,
                          f"state_dir={tmp_path / f'machine{i}'}"],
                         cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for i in range(WORKERS)
    ]
    outputs = []
    for i, worker in enumerate(workers):
        out, _ = worker.communicate(timeout=400)
        outputs.append(out)
        (tmp_path / f"machine{i}.log").write_text(out)
        assert worker.returncode == 0, out[-3000:]
    summaries = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    assert all(password not in out for out in outputs)
    assert all(s["storage"].startswith("postgresql://postgres:***@127.0.0.1") for s in summaries)

    # Optuna's side: one study, every trial number once, the budget kept.
    (name,) = {s["study_name"] for s in summaries}  # machines agree on the study's identity
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials)))
    assert all(t.state.is_finished() for t in trials)
    finished = len(trials)
    # Exactly N unless both workers asked within the same instant (see README: at most N+k-1).
    assert N_TRIALS <= finished <= N_TRIALS + WORKERS - 1, finished
    print(f"{WORKERS} workers, sweep.n_trials={N_TRIALS}: {finished} finished trials")

    # MLflow's side, through the server: exactly one child run per trial, under the two parents.
    client = MlflowClient(mlflow_server["uri"])
    exp = client.get_experiment_by_name("chest-xray")
    runs = client.search_runs([exp.experiment_id], f"tags.study_name = '{name}'",
                              max_results=1000)
    parents = {r.info.run_id: r for r in runs if r.data.tags.get("role") == "study"}
    children = [r for r in runs if r.data.tags.get("role") == "trial"]
    assert set(parents) == {s["parent_run_id"] for s in summaries}
    assert all(p.info.status == "FINISHED" for p in parents.values())
    by_number = {int(r.data.tags["optuna_trial"]): r for r in children}
    assert len(by_number) == len(children) == len(trials)
    assert sorted(by_number) == numbers and len(set(numbers)) == len(numbers)
    status = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "FINISHED",
              TrialState.FAIL: "FAILED"}
    for trial in trials:
        run = by_number[trial.number]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.info.status == status[trial.state]
        assert run.data.tags["mlflow.parentRunId"] in parents
    # Both workers ran trials, at the same time.
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == set(parents)
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))

    # Artifacts went up through the server into its artifact root.
    run = children[0]
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert "config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert list(mlflow_server["artifacts"].rglob("config.yaml"))


# ---- make sweep's worker launcher, with stand-in workers --------------------------------------
FAKE_WORKER = r"""
import os, signal, sys, time
out = sys.argv[1]
signals = []
signal.signal(signal.SIGINT, lambda signum, frame: signals.append(signum))
try:  # the first worker to start succeeds, the others fail with 3
    os.close(os.open(os.path.join(out, "first"), os.O_CREAT | os.O_EXCL))
    code = 0
except FileExistsError:
    code = 3
with open(os.path.join(out, f"{os.getpid()}.ready"), "w") as fh:
    fh.write(os.environ.get("CUDA_VISIBLE_DEVICES", "-") + "\n" + " ".join(sys.argv[2:]))
if os.environ.get("FAKE_WAIT_FOR_CTRL_C"):
    deadline = time.time() + 60
    while not signals and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # a second Ctrl-C would have arrived by now
    code = 130
with open(os.path.join(out, f"{os.getpid()}.signals"), "w") as fh:
    fh.write(str(len(signals)))
sys.exit(code)
"""


def _make_sweep(tmp_path, *variables: str, wait_for_ctrl_c: bool) -> subprocess.Popen:
    fake = tmp_path / "fake_worker.py"
    fake.write_text(FAKE_WORKER)
    env = dict(os.environ)
    if wait_for_ctrl_c:
        env["FAKE_WAIT_FOR_CTRL_C"] = "1"
    return subprocess.Popen(
        ["make", "-s", "-o", ".venv/.installed", "sweep", "MODEL=resnet18",
         f"PY={sys.executable} {fake} {tmp_path}", "ARGS=sweep.n_trials=8", *variables],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def _workers(tmp_path) -> list[tuple[str, str]]:
    return sorted(tuple(p.read_text().split("\n")) for p in tmp_path.glob("*.ready"))


def test_make_sweep_runs_one_worker_per_gpu_and_ctrl_c_reaches_each_once(tmp_path):
    make = _make_sweep(tmp_path, "GPUS=3,5", wait_for_ctrl_c=True)
    deadline = time.time() + 60
    while len(_workers(tmp_path)) < 2 and time.time() < deadline and make.poll() is None:
        time.sleep(0.1)
    os.killpg(make.pid, signal.SIGINT)  # Ctrl-C in the terminal
    out, _ = make.communicate(timeout=60)
    assert make.returncode != 0, out
    arguments = "-m pipeline.sweep backbone=resnet18 sweep.n_trials=8"
    assert _workers(tmp_path) == [("3", arguments), ("5", arguments)]
    assert [p.read_text() for p in tmp_path.glob("*.signals")] == ["1", "1"]


def test_make_sweep_fails_when_a_worker_fails(tmp_path):
    make = _make_sweep(tmp_path, "WORKERS=3", wait_for_ctrl_c=False)
    out, _ = make.communicate(timeout=60)
    assert make.returncode == 2 and "Error 3" in out, out  # make's own code for a failed recipe
    assert [cuda for cuda, _ in _workers(tmp_path)] == ["-", "-", "-"]
    assert "make sweep: 3 workers" in out


# ---- make sweep-all's studies side by side, with stand-in studies ------------------------------
FAKE_STUDY = r"""
import os, sys, time
out, backbone = sys.argv[1], sys.argv[4].split("=", 1)[1]
open(os.path.join(out, f"{backbone}.running"), "w").close()
running = len(list(p for p in os.listdir(out) if p.endswith(".running")))
with open(os.path.join(out, f"{backbone}.seen"), "w") as fh:
    fh.write(str(running))
time.sleep(1.5)
os.remove(os.path.join(out, f"{backbone}.running"))
sys.exit(4 if backbone == "fails" else 0)
"""


def _sweep_all(tmp_path, models: str, workers: int) -> subprocess.CompletedProcess:
    fake = tmp_path / "fake_study.py"
    fake.write_text(FAKE_STUDY)
    return subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "sweep-all", f"WORKERS={workers}",
         f"ALL_MODELS={models}", f"PY={sys.executable} {fake} {tmp_path}"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )


def test_sweep_all_runs_n_studies_at_a_time(tmp_path):
    proc = _sweep_all(tmp_path, "a b c d", workers=2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = {p.stem: int(p.read_text()) for p in tmp_path.glob("*.seen")}
    assert sorted(seen) == ["a", "b", "c", "d"]
    assert max(seen.values()) == 2  # two studies at once, never three
    assert proc.stdout.count("make sweep-all: starting the study of") == 4


def test_sweep_all_keeps_the_first_failing_studys_exit_code(tmp_path):
    proc = _sweep_all(tmp_path, "fails b c", workers=1)
    assert proc.returncode == 2 and "Error 4" in proc.stderr, proc.stdout + proc.stderr
    assert sorted(p.stem for p in tmp_path.glob("*.seen")) == ["fails"]  # nothing after it


# ---- servers that restart ---------------------------------------------------------------------
def _sweepers(common: list[str], tmp_path: Path, n: int) -> list[subprocess.Popen]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    return [subprocess.Popen([sys.executable, "-m", "pipeline.sweep", *common,
                              f"state_dir={tmp_path / f'machine{i}'}"], cwd=PROJECT_ROOT,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True) for i in range(n)]


def _one_run_per_trial(uri: str, study_name: str, trials: list) -> dict[int, str]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("chest-xray")
    runs = client.search_runs([exp.experiment_id], f"tags.study_name = '{study_name}'",
                              max_results=1000)
    assert [r for r in runs if r.info.status == "RUNNING"] == []
    children = [r for r in runs if r.data.tags.get("role") == "trial"]
    numbers = [int(r.data.tags["optuna_trial"]) for r in children]
    assert sorted(numbers) == sorted(t.number for t in trials)  # one run per trial, no more
    return {int(r.data.tags["optuna_trial"]): r.info.run_id for r in children}


@pytest.mark.slow
def test_a_postgres_restart_mid_sweep_loses_nothing(postgres, mlflow_server, tiny_overrides,
                                                    tmp_path):
    storage, name, epochs = f"{postgres}/optuna", "restart-pg", 6
    common = tiny_overrides(
        f"trainer.max_epochs={epochs}", "tracking.log_model=false", f"sweep.n_trials={N_TRIALS}",
        f"sweep.storage={storage}", f"tracking.uri={mlflow_server['uri']}",
        f"sweep.study_name={name}", "sweep.pruner=none", "trainer.early_stopping_patience=null")
    workers = _sweepers(common, tmp_path, WORKERS)
    deadline, mid = time.time() + 300, []
    while not mid and time.time() < deadline:  # a trial has written epochs, and has more to go
        try:
            mid = [t.number for t in optuna.load_study(study_name=name, storage=storage
                                                       ).get_trials()
                   if t.state == TrialState.RUNNING and 1 <= len(t.intermediate_values) <= 3]
        except (KeyError, Exception):  # noqa: BLE001 -- the study is not created yet
            pass
        time.sleep(0.2)
    assert mid, "no trial was mid-way through its epochs"
    began = time.time() * 1000
    restart = subprocess.run(["bash", str(SCRIPT), "restart", CLUSTERS[postgres]],
                             capture_output=True, text=True, timeout=120)
    back = time.time() * 1000
    assert restart.returncode == 0, restart.stderr[-2000:]
    outs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0] * WORKERS, [o[-3000:] for o in outs]
    # Each worker found its connections cut, said so, and went on through new ones.
    for out in outs:
        assert "the study storage lost its database connection" in out, out[-3000:]
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials()
    assert all(t.state.is_finished() for t in trials)
    assert len({t.number for t in trials}) == len(trials)
    assert N_TRIALS <= len(trials) <= N_TRIALS + WORKERS - 1
    runs = _one_run_per_trial(mlflow_server["uri"], name, trials)
    # The restart landed inside a running trial: that trial's run logged an epoch before it and
    # one after it, and the trial finished with all its epochs.
    spanned = []
    client = MlflowClient(mlflow_server["uri"])
    for number in mid:
        stamps = [m.timestamp for m in client.get_metric_history(runs[number], "val_auroc")]
        if min(stamps) < began and max(stamps) > back:
            spanned.append(number)
            trial = {t.number: t for t in trials}[number]
            assert trial.state == TrialState.COMPLETE and len(trial.intermediate_values) == epochs
            assert len(stamps) == epochs
    assert spanned, f"no trial of {mid} logged epochs on both sides of the restart"


def _unanswered_request(port: int) -> bool:
    """A connection to the server on ``port`` holds request bytes the server has not read (an
    established socket on its side with a non-empty receive queue, /proc/net/tcp)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                local, state, queues = fields[1], fields[3], fields[4]
                if (int(local.rsplit(":", 1)[1], 16) == port and state == "01"
                        and int(queues.split(":")[1], 16) > 0):
                    return True
    return False


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_a_tracking_server_restart_mid_sweep_loses_nothing(stop, tiny_overrides, tmp_path):
    """SIGTERM: the server shuts down as it would be stopped. SIGKILL: frozen (SIGSTOP) until a
    request of the worker waits in it unread, then killed with that request unanswered."""
    port, name = _free_port(), f"restart-mlflow-{stop.lower()}"
    backend = f"sqlite:///{tmp_path / 'server.db'}"
    server = start_server(port, backend, tmp_path / "artifacts", tmp_path / "server.log")
    uri = f"http://127.0.0.1:{port}"
    common = tiny_overrides("trainer.max_epochs=4", "tracking.log_model=false",
                            "sweep.n_trials=3", f"tracking.uri={uri}", f"sweep.study_name={name}",
                            "sweep.pruner=none", "trainer.early_stopping_patience=null",
                            f"sweep.storage=sqlite:///{tmp_path / 'optuna.db'}")
    (worker,) = _sweepers(common, tmp_path, 1)
    try:
        client = MlflowClient(uri)
        deadline = time.time() + 300
        while time.time() < deadline:  # a trial run is logging its epochs
            exp = client.get_experiment_by_name("chest-xray")
            runs = client.search_runs([exp.experiment_id], "tags.role = 'trial'") if exp else []
            if runs and client.get_metric_history(runs[0].info.run_id, "val_auroc"):
                break
            time.sleep(0.3)
        if stop == "SIGKILL":
            os.killpg(server.pid, signal.SIGSTOP)
            deadline = time.time() + 60  # until the worker's next request waits in the server
            while not _unanswered_request(port) and time.time() < deadline:
                time.sleep(0.2)
            assert _unanswered_request(port), "no request reached the frozen server"
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
            server.log.close()
        else:
            stop_server(server)
        time.sleep(3)  # the worker's requests fail meanwhile, and are retried
        server = start_server(port, backend, tmp_path / "artifacts", tmp_path / "server.log")
        out = worker.communicate(timeout=600)[0]
        assert worker.returncode == 0, out[-3000:]
        trials = optuna.load_study(study_name=name,
                                   storage=f"sqlite:///{tmp_path / 'optuna.db'}").get_trials()
        assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
        runs = _one_run_per_trial(uri, name, trials)  # nothing RUNNING, one run per trial
        assert {MlflowClient(uri).get_run(r).info.status for r in runs.values()} == {"FINISHED"}
    finally:
        if worker.poll() is None:
            worker.kill()
        if not server.log.closed:
            stop_server(server)
