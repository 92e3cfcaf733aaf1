"""`ray-history serve`'s bounds on heavy work: users' SQL (historyserver.sqlpool) and session derivations
(historyserver.derivations). Each flag reads its environment variable, as every flag of the CLI does.

`bounded` adds the flags to the command and takes their values out of its keywords; the command reads them back
with `chosen()` as ServerSettings fields, so its signature lists only what it uses itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import click

from historyserver.limits import parse_size


def _size(_: click.Context, param: click.Parameter, value: str) -> int:
    try:
        size = parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if size < 16 * 2**20 and param.name != "sql_max_bytes":
        raise click.BadParameter(f"{value} is too little to run anything: give at least 16MB")
    if size < 1:
        raise click.BadParameter("must be more than 0 bytes")
    return size


# (flag, environment variable, ServerSettings field, help, click keywords)
OPTIONS: tuple[tuple[str, str, str, str, dict[str, Any]], ...] = (
    ("--sql-concurrency", "RAY_HISTORY_SQL_CONCURRENCY", "sql_concurrency",
     "SQL queries run at once, each in a worker process; a few more wait up to 5 s, the rest are answered 429 "
     "with Retry-After.", {"default": 2, "type": click.IntRange(min=1, max=64)}),
    ("--sql-memory", "RAY_HISTORY_SQL_MEMORY", "sql_memory_bytes",
     "Memory one SQL query may take, its worker process all told (DuckDB's memory_limit is three quarters of "
     "it); past it the query is stopped and answered 400.", {"default": "512MB", "callback": _size}),
    ("--sql-threads", "RAY_HISTORY_SQL_THREADS", "sql_threads", "DuckDB threads of one SQL query.",
     {"default": 1, "type": click.IntRange(min=1, max=64)}),
    ("--sql-max-bytes", "RAY_HISTORY_SQL_MAX_BYTES", "sql_max_bytes",
     "Bytes one SQL result may hold (as Arrow holds it); a bigger one is answered 400 saying so.",
     {"default": "16MiB", "callback": _size}),
    ("--max-derivations", "RAY_HISTORY_MAX_DERIVATIONS", "max_derivations",
     "Sessions derived from their raw events at once (first opens); another waits up to 5 s, then is answered "
     "503 with Retry-After, saying the session is being prepared.", {"default": 2, "type": click.IntRange(min=1)}),
    ("--derive-memory", "RAY_HISTORY_DERIVE_MEMORY", "derive_memory_bytes",
     "Memory the derivations running at once may take together (each gets its estimated share as DuckDB's "
     "memory_limit, and spills to the cache past it).", {"default": "2GB", "callback": _size}),
)  # fmt: skip

_CHOSEN: ContextVar[dict[str, Any] | None] = ContextVar("bounds_chosen", default=None)


def bounded(command: Callable[..., Any]) -> Callable[..., Any]:
    """The bound flags on `command` (put it right above the function, under its other options)."""

    @functools.wraps(command)
    def run(**arguments: Any) -> Any:
        values = {field: arguments.pop(flag[2:].replace("-", "_")) for flag, _, field, _, _ in OPTIONS}
        with _chosen_as(values):
            return command(**arguments)

    for flag, env, _, text, keywords in reversed(OPTIONS):
        run = click.option(flag, envvar=env, show_envvar=True, help=text, **keywords)(run)
    return run


@contextmanager
def _chosen_as(values: dict[str, Any]) -> Iterator[None]:
    token = _CHOSEN.set(values)
    try:
        yield
    finally:
        _CHOSEN.reset(token)


def chosen() -> dict[str, Any]:
    """The bounds given to the running command, as ServerSettings fields (none outside one)."""
    return dict(_CHOSEN.get() or {})
