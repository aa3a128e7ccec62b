"""The Makefile passes values, not commands: what a user gives in IMAGES, ARGS, RUN or MODEL
reaches the program as the characters typed, and a file name with a space works."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from pipeline.common.launch import expand
from pipeline.config import PROJECT_ROOT


def make(*args: str) -> subprocess.CompletedProcess[str]:
    """`make` in the project as a user runs it (the environment taken as installed)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(["make", "-s", "-o", ".venv/.installed", *args], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_shell_metacharacter_arrives_as_a_literal(tmp_path):
    planted = [tmp_path / f"planted{i}" for i in range(5)]
    proc = make(
        "predict",
        f"IMAGES=a.png; touch {planted[0]} $(shell touch {planted[1]}) `touch {planted[2]}`",
        f"ARGS=state_dir={tmp_path / 'state'} --model 'run; touch {planted[3]}'",
        f"RUN=$$(touch {planted[4]})",
    )
    assert [p.name for p in planted if p.exists()] == []
    assert proc.returncode == 2, proc.stderr
    # The model named in ARGS reached predict whole, quotes removed, ';' a character.
    assert f"error: no model run; touch {planted[3]} to predict with" in proc.stderr
    proc = make("rerun", f"RUN=x; touch {planted[4]}", f"ARGS=state_dir={tmp_path / 'state'}")
    assert not planted[4].exists() and proc.returncode == 2
    assert f"run 'x; touch {planted[4]}'" in proc.stderr  # the id as given, in its error


@pytest.mark.slow
def test_a_folder_with_a_space_in_its_name_is_described(tmp_path):
    root = tmp_path / "chest x-rays; 2024"
    rng = np.random.default_rng(0)
    for label in ("normal", "pneumonia"):
        (root / label).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 255, (32, 32), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"scan {i}.png")
    # Quoted for the shell split (the word) and for Hydra's grammar (the value), as on a shell.
    proc = make("describe", f"ARGS=dataset=imagefolder \"dataset.root='{root}'\" "
                f"dataset.image_size=32 state_dir={tmp_path / 'state'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["classes"] == {"normal": 12, "pneumonia": 12}


def test_words_are_split_as_a_shell_splits_them_and_never_run():
    environ = {"GIVEN_ARGS": "a=1 'b=two words' c\\ d \"$(x)\" `y` *", "GIVEN_EMPTY": ""}
    assert expand(["prog", "@GIVEN_ARGS", "@GIVEN_EMPTY", "@UNSET", "lit@"], environ) == [
        "prog", "a=1", "b=two words", "c d", "$(x)", "`y`", "*", "lit@"]


def test_an_unclosed_quote_is_one_line_exit_2(tmp_path):
    proc = make("describe", "ARGS=dataset.root='unclosed")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (
        "error: ARGS=\"dataset.root='unclosed\" cannot be split into words (No closing "
        "quotation): close its quotes")
