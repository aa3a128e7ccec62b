"""Shared plumbing of the thin entry points: one-line errors, a JSON last line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from pipeline.common.errors import PipelineError


def print_json_line(obj: dict[str, Any]) -> None:
    """The machine-readable LAST line of an entry point's output."""
    sys.stdout.flush()
    print(json.dumps(obj, default=_jsonable), flush=True)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def run(main: Callable[[list[str]], int | None]) -> None:
    """Call ``main(argv)``; a PipelineError becomes ``error: <message>`` on stderr and exit 2."""
    try:
        code = main(sys.argv[1:])
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    sys.exit(code or 0)


# How a stage prints its progress: ``print``, or a no-op when the caller asked for quiet.
Say = Callable[..., None]
