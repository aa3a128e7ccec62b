"""URLs that may carry a password (a PostgreSQL study storage, a tracking server): what may be
printed or stored of them."""

from __future__ import annotations


def public_url(url: str) -> str:
    """The URL without its password (it is printed and logged)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 -- not a SQLAlchemy URL: print it as given
        return url
