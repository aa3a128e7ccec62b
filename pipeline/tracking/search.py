"""Questions to the MLflow store answered by the store: filtered, ordered, paged ``search_runs``.

Nothing here lists an experiment's runs to filter or sort them in Python. "Which backbones are
there, and the best run of each" is asked one value at a time: the best run left, then the best
run whose tag differs from every value seen, and so on, one short query per distinct value.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from pipeline.common.errors import ConfigError
from pipeline.tracking.schema import Tag

PAGE_SIZE = 1000  # MLflow's largest page for search_runs on most stores
MAX_DISTINCT = 200  # a safety bound on the one-query-per-value walk


def quote(value: str) -> str:
    """A filter-string literal for ``value``."""
    value = str(value)
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ConfigError(f"cannot search for {value!r}: it holds both kinds of quotes")


def where(*clauses: str, **tags: str | None) -> str:
    """``clauses`` and ``tags.<key> = '<value>'`` for every tag given (None: not filtered); a key
    that is no ``Tag`` is a bug."""
    parts = [c for c in clauses if c]
    parts += [f"tags.{Tag(key)} = {quote(value)}" for key, value in tags.items()
              if value is not None]
    return " AND ".join(parts)


def best_of(metric: str) -> str:
    """The name a run logs its best epoch's value of ``metric`` under: ``best_val_auroc`` for
    ``val_auroc`` (per-epoch values keep their own name); other metrics as they are."""
    return f"best_{metric}" if metric.startswith("val_") else metric


def order_by(metric: str, direction: str) -> list[str]:
    """Best first by the best epoch's ``metric`` (``best_of``), ties to the lower best
    ``val_loss``, then to the earlier run. ``direction`` is maximize or minimize (the schema's
    select.direction)."""
    order = [f"metrics.`{best_of(metric)}` {'DESC' if direction == 'maximize' else 'ASC'}"]
    if metric != "val_loss":
        order.append(f"metrics.{best_of('val_loss')} ASC")
    return [*order, "attributes.start_time ASC"]


def first_run(
    mlflow_client: Any, experiment_ids: Sequence[str], filter_string: str,
    order: Sequence[str] | None = None,
) -> Any | None:
    """The first run of a search (one result asked for), or None."""
    runs = mlflow_client.search_runs(
        list(experiment_ids), filter_string=filter_string, order_by=list(order or []),
        max_results=1,
    )
    return runs[0] if runs else None


def first_per_value(
    mlflow_client: Any, experiment_ids: Sequence[str], filter_string: str, tag: Tag,
    order: Sequence[str] | None = None,
) -> list[tuple[str, Any]]:
    """``(value, first run)`` for each distinct value of ``tags.<tag>`` among the matching runs,
    in search order: with a best-first ``order`` that is each value's best run, best value first.
    Runs without the tag are not counted. One query per value, plus one.
    """
    found: list[tuple[str, Any]] = []
    for _ in range(MAX_DISTINCT):
        seen = [f"tags.{tag} != {quote(value)}" for value, _ in found]
        run = first_run(mlflow_client, experiment_ids,
                        where(filter_string, f"tags.{tag} LIKE '%'", *seen), order)
        if run is None:
            return found
        found.append((run.data.tags[tag], run))
    raise ConfigError(f"more than {MAX_DISTINCT} distinct values of tags.{tag}: narrow the search")


def all_runs(mlflow_client: Any, experiment_ids: Sequence[str], filter_string: str
             ) -> Iterator[Any]:
    """Every run that matches, page by page (a search stops at one page of 1,000 otherwise)."""
    token = None
    while True:
        page = mlflow_client.search_runs(
            list(experiment_ids), filter_string=filter_string, max_results=PAGE_SIZE,
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def count_runs(mlflow_client: Any, experiment_ids: Sequence[str], filter_string: str) -> int:
    """How many runs match: paged through the matching runs only, nothing kept."""
    total, token = 0, None
    while True:
        page = mlflow_client.search_runs(
            list(experiment_ids), filter_string=filter_string, max_results=PAGE_SIZE,
            page_token=token,
        )
        total += len(page)
        token = page.token
        if not token:
            return total
