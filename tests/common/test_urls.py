"""The one redaction of a URL's password, in text and in what a process prints."""

from __future__ import annotations

import subprocess
import sys

from pipeline.common.urls import public_url, redact, redact_tree
from pipeline.config import PROJECT_ROOT

PASSWORD = "Pw-9f3e1c"  # noqa: S105 -- a made-up one, searched for


def test_every_password_of_every_url_is_hidden_and_the_rest_kept():
    line = (f"python -m pipeline.sweep sweep.storage=postgresql://user:{PASSWORD}@db:5432/optuna "
            f"tracking.uri=http://me:{PASSWORD}@mlflow.lan:5000 'redis://:{PASSWORD}@cache' "
            f"postgresql://h/db?user=u&password={PASSWORD}&sslmode=require "
            f"https://u:p@{PASSWORD}@host/x sqlite:////tmp/a.db http://127.0.0.1:5000")
    out = redact(line)
    assert PASSWORD not in out
    assert "sweep.storage=postgresql://user:***@db:5432/optuna" in out
    assert "tracking.uri=http://me:***@mlflow.lan:5000" in out and "'redis://:***@cache'" in out
    assert "password=***&sslmode=require" in out and "https://u:***@host/x" in out
    assert "sqlite:////tmp/a.db http://127.0.0.1:5000" in out  # no password: as given
    assert public_url(f"postgresql://u:{PASSWORD}@h/d") == "postgresql://u:***@h/d"
    assert redact_tree({"a": [f"x://u:{PASSWORD}@h", 3], "b": None}) == {
        "a": ["x://u:***@h", 3], "b": None}


def test_what_an_entry_point_prints_or_fails_with_is_redacted():
    """A config error naming the storage (stderr), print and a library's log line (stdout)."""
    url = f"postgresql://user:{PASSWORD}@127.0.0.1:9/optuna"
    code = ("import logging, sys; from pipeline.common.cli import run; "
            "from pipeline.common.errors import ConfigError\n"
            "log = logging.getLogger('lib'); log.addHandler(logging.StreamHandler(sys.stdout))\n"
            "def main(argv):\n"
            "    log.warning('lib logs %s', argv[0])\n"
            "    print('storage', argv[0], flush=True)\n"
            "    raise ConfigError(f'sweep.storage={argv[0]} cannot be opened')\n"
            "run(main)")
    proc = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=60)
    assert proc.returncode == 2
    assert PASSWORD not in proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines() == [
        "lib logs postgresql://user:***@127.0.0.1:9/optuna",  # a handler made before run()
        "storage postgresql://user:***@127.0.0.1:9/optuna"]
    assert proc.stderr.strip() == ("error: sweep.storage=postgresql://user:***@127.0.0.1:9/optuna"
                                   " cannot be opened")
