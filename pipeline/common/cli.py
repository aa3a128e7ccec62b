"""Shared plumbing of the thin entry points: one-line errors, a JSON last line."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from pipeline.common.errors import PipelineError
from pipeline.common.urls import redact


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


class _Redacting:
    """A text stream that hides the password of every URL written to it (``redact``): whatever
    an entry point, a library's log line or a traceback prints of a storage URL."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _redact_output() -> None:
    """stdout and stderr redacted, for print and for the log handlers libraries already made
    (MLflow's, made when it was imported, hold the streams themselves)."""
    if isinstance(sys.stdout, _Redacting):
        return
    streams = {id(sys.stdout): _Redacting(sys.stdout), id(sys.stderr): _Redacting(sys.stderr)}
    sys.stdout, sys.stderr = streams[id(sys.stdout)], streams[id(sys.stderr)]
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.StreamHandler) and id(stream) in streams:
                handler.setStream(streams[id(stream)])


def run(main: Callable[[list[str]], int | None]) -> None:
    """Call ``main(argv)``; a PipelineError becomes ``error: <message>`` on stderr and exit 2.
    What the process prints goes out with every URL's password hidden."""
    _redact_output()
    try:
        code = main(sys.argv[1:])
    except PipelineError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    sys.exit(code or 0)


# How a stage prints its progress: ``print``, or a no-op when the caller asked for quiet.
Say = Callable[..., None]
