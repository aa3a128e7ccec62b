"""Shared fixtures: every test gets its own state dir, so no test touches the project's mlruns/."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

# No network here: a request for ImageNet weights fails at once instead of after a minute of
# retries (the message it gives is what the tests check). Child processes inherit it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "covid-chestxray-sample"


@pytest.fixture(autouse=True, scope="session")
def nothing_written_to_the_working_directory() -> Iterator[None]:
    """MLflow 3 falls back to ``sqlite:///mlflow.db`` in the working directory when a call is not
    given its store: every command names its own, so no test may leave such a file behind."""
    places = {Path.cwd() / "mlflow.db", PROJECT_ROOT / "mlflow.db"}
    before = {p for p in places if p.exists()}
    yield
    stray = sorted(str(p) for p in places if p.exists() and p not in before)
    assert not stray, f"an MLflow call fell back to its default store and wrote {stray}"


@pytest.fixture(autouse=True)
def no_tracking_uri_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI: never let one test's store leak."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def covid_sample() -> Path:
    """The real covid-chestxray-dataset sample beside the project; skipped only when absent."""
    if not (SHARED_SAMPLE / "metadata.csv").is_file():
        pytest.skip(f"{SHARED_SAMPLE} is not there")
    return SHARED_SAMPLE


# A training small enough for a test: 32 px synthetic images, a small backbone, two epochs.
TINY = (
    "backbone=resnet18",
    "dataset.image_size=32",
    "dataset.num_images=96",
    "dataset.batch_size=16",
    "trainer.max_epochs=2",
    "trainer.progress_bar=false",
)


@pytest.fixture
def tiny_overrides(state_dir: Path):
    """``tiny_overrides(*more)``: overrides for a tiny training whose state lives in state_dir."""

    def make(*more: str) -> list[str]:
        return [f"state_dir={state_dir}", *TINY, *more]

    return make


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from threads, and spin-waiting OpenMP threads crawl when
    another process shares the two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def resnet18_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """resnet18 weights the tests save themselves (timm's seeded initialisation): freezing
    stages needs weights that come from somewhere, and none can be downloaded here."""
    import timm

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    return path


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``small_tmpfs("48m")``: a folder on a tmpfs of that size, to fill up (skipped where
    mounting needs rights the tests lack); unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(folder)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a size-limited tmpfs here (needs root and mount rights): "
                        f"{proc.stderr.strip() or proc.returncode}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
