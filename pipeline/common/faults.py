"""Fault points: named places where a process kills itself with SIGKILL when
``PIPELINE_FAULT=<point>`` is set, so tests can kill a real process exactly mid-write (a timer or a
log line reaches such a moment only by luck). Nothing happens unless the variable names the point.

Points: ``decode`` (building the decode cache), ``features`` (building a feature-cache entry),
``epoch`` (mid-epoch), ``log_model`` (logging a run's artifacts and model), ``select_test``
(select_best's selection run half written: its values logged, its artifacts not), ``register``
(select_best's registration).
"""

from __future__ import annotations

import os
import signal


def fault_point(name: str) -> None:
    """SIGKILL this process when ``PIPELINE_FAULT`` names ``name``."""
    if name in os.environ.get("PIPELINE_FAULT", "").split(","):
        os.kill(os.getpid(), signal.SIGKILL)
