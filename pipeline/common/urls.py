"""URLs that may carry a password (a PostgreSQL study storage, a tracking server): what may be
printed or stored of them.

One function, ``redact``, is what every place that writes or echoes a config, a command line or
an error passes its text through (the config.yaml artifact, params, tags, the report, stdout and
stderr): a password in a URL is never written anywhere, the rest of the URL stays readable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
# scheme://user:PASSWORD@host: the password runs to the last '@' of the token (an unencoded '@'
# in a password is then hidden too), a token ending at whitespace or a quote.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*):[^\s'\"]*@")
# ...?password=PASSWORD (libpq and SQLAlchemy read one from the query too).
_QUERY = re.compile(r"(?P<head>[?&](?:password|passwd|pwd)=)[^&\s'\"]*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _QUERY.sub(lambda m: f"{m['head']}{MASK}", text)


def public_url(url: str) -> str:
    """The URL without its password (it is printed and logged)."""
    return redact(url)


def redact_tree(node: Any) -> Any:
    """A plain container (a config as dicts and lists) with every string redacted."""
    if isinstance(node, str):
        return redact(node)
    if isinstance(node, Mapping):
        return {key: redact_tree(value) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [redact_tree(value) for value in node]
    return node
