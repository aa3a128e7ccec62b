"""Fault points: named places where a process kills itself with SIGKILL when
``PIPELINE_FAULT=<point>`` is set, so tests can kill a real process exactly mid-write (a timer or a
log line reaches such a moment only by luck). Nothing happens unless the variable names the point.

Points: ``decode`` (building the decode cache), ``features`` (building a feature-cache entry),
``epoch`` (mid-epoch), ``log_model`` (mid-upload of a run's model: its weights are in the store,
its manifest not yet), ``select_test`` (select_best's selection run half written: its values
logged, its artifacts not), ``register`` (select_best's registration).

Races, the same way: ``PIPELINE_BARRIER=<point>:<parties>:<folder>`` holds each process at
``barrier(point)`` until ``parties`` processes have reached it (each leaves a file in
``folder``), so they leave it together; ``PIPELINE_PAUSE=<point>:<seconds>`` sleeps at
``pause(point)``, holding a window open for the other process. Points: ``registry_lock`` (just
before select_best takes the registry lock), ``register_search`` (between the search for the
run's model version and creating one).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

BARRIER_WAIT_S = 300.0


def fault_point(name: str) -> None:
    """SIGKILL this process when ``PIPELINE_FAULT`` names ``name``."""
    if name in os.environ.get("PIPELINE_FAULT", "").split(","):
        os.kill(os.getpid(), signal.SIGKILL)


def barrier(name: str) -> None:
    """Wait here for the other processes when ``PIPELINE_BARRIER`` names ``name``."""
    point, _, rest = os.environ.get("PIPELINE_BARRIER", "").partition(":")
    if point != name:
        return
    parties, _, folder = rest.partition(":")
    arrived = Path(folder)
    (arrived / f"{name}.{os.getpid()}").touch()
    deadline = time.monotonic() + BARRIER_WAIT_S
    while len(list(arrived.glob(f"{name}.*"))) < int(parties):
        if time.monotonic() > deadline:
            raise RuntimeError(f"barrier {name}: {parties} processes never arrived")
        time.sleep(0.05)


def pause(name: str) -> None:
    """Sleep here when ``PIPELINE_PAUSE`` names ``name``."""
    point, _, seconds = os.environ.get("PIPELINE_PAUSE", "").partition(":")
    if point == name:
        time.sleep(float(seconds))
