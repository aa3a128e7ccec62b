"""Start a program with arguments some of which come from environment variables, split as a shell
splits words but never run by one: how ``make`` hands its users' values (``ARGS``, ``IMAGES``, ...)
to a command.

``python -m pipeline.common.launch WORD|@NAME ...``: each ``@NAME`` is replaced by the words of
the environment variable NAME (quotes group, a backslash escapes; ``;``, ``$(...)``, backquotes,
``*`` and ``~`` are characters like any other); every other WORD is passed as it is; then the
program the first word names replaces this process (same pid, same signals, its exit status).
"""

from __future__ import annotations

import os
import shlex
import sys


def expand(words: list[str], environ: dict[str, str] | os._Environ) -> list[str]:
    """The argument list: each ``@NAME`` split from ``environ[NAME]`` (unset: no words)."""
    argv: list[str] = []
    for word in words:
        if word.startswith("@") and len(word) > 1:
            value = environ.get(word[1:], "")
            try:
                argv += shlex.split(value)
            except ValueError as exc:  # an unclosed quote: bad input, exit 2
                print(f"error: {word[1:].removeprefix('GIVEN_')}={value!r} cannot be split into "
                      f"words ({exc}): close its quotes", file=sys.stderr, flush=True)
                sys.exit(2)
        else:
            argv.append(word)
    return argv


def main(words: list[str]) -> None:
    argv = expand(words, os.environ)
    if not argv:
        print("usage: python -m pipeline.common.launch PROGRAM [WORD|@NAME ...]", file=sys.stderr)
        sys.exit(2)
    sys.stdout.flush()
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
