"""make dashboard: optuna-dashboard on a study storage, on loopback, showing its studies."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import optuna

from pipeline.config import PROJECT_ROOT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_make_dashboard_serves_the_studies_of_the_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="synthetic-resnet18", storage=storage)
    study.enqueue_trial({"x": 1.0})
    study.optimize(lambda t: t.suggest_float("x", 0, 2), n_trials=1)
    port = _free_port()
    server = subprocess.Popen(
        ["make", "-s", "-o", ".venv/.installed", "dashboard", f"STORAGE={storage}",
         f"DASHBOARD_PORT={port}"], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, body = time.time() + 60, None
        while time.time() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies",
                                            timeout=2) as response:
                    body = json.loads(response.read())
            except OSError:
                time.sleep(0.3)
        assert body is not None, "the dashboard never answered"
        studies = body["study_summaries"]
        assert [s["study_name"] for s in studies] == ["synthetic-resnet18"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
