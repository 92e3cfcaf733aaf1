"""`ray-history serve`'s catalog settings (historyserver.catalog): whether the catalog is kept on the cache volume,
how often it is published as index objects, how often a refresh lists every session. Each flag reads its
environment variable, as every flag of the CLI does.

`catalog_settings` adds the flags and hands the command one keyword, `catalog`: the ServerSettings fields they set.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

OFF = ("0", "off", "never")


def _seconds_or_off(_: click.Context, param: click.Parameter, value: str | float | None) -> float | None:
    """Seconds, or None for 0/'off'/'never' (never done)."""
    text = str(value).strip().lower()
    if text in OFF:
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number of seconds, nor 0/off") from None
    if seconds < 0 or seconds != seconds:
        raise click.BadParameter(f"{value!r}: give a number of seconds >= 0, or off")
    return seconds or None


# (flag, environment variable, ServerSettings field, help, click keywords)
OPTIONS: tuple[tuple[str, str, str, str, dict[str, Any]], ...] = (
    ("--keep-catalog/--no-keep-catalog", "RAY_HISTORY_KEEP_CATALOG", "keep_catalog",
     "Keep the session catalog in --cache-dir/catalog.duckdb, so a restart serves it at once and reads only what "
     "changed; without it every start reads the archive.", {"default": True}),
    ("--catalog-index-interval", "RAY_HISTORY_CATALOG_INDEX_INTERVAL", "catalog_index_interval",
     "Seconds between writes of a namespace's catalog index object (catalog/{namespace}.parquet, from which a new "
     "replica starts with a few GETs); 0 or off: never written.", {"default": "300", "callback": _seconds_or_off}),
    ("--full-refresh-interval", "RAY_HISTORY_FULL_REFRESH_INTERVAL", "full_refresh_interval",
     "Seconds between refreshes that list every session document; the refreshes between read the archive's change "
     "journal (changes/) and list only the sessions it names. 0: every refresh lists everything (for writers too "
     "old to journal).", {"default": 3600.0, "type": click.FloatRange(min=0)}),
)  # fmt: skip


def catalog_settings(command: Callable[..., Any]) -> Callable[..., Any]:
    """The catalog flags on `command`, which takes them as `catalog`: {ServerSettings field: value}."""

    @functools.wraps(command)
    def run(**arguments: Any) -> Any:
        chosen = {field: arguments.pop(_name(flag)) for flag, _, field, _, _ in OPTIONS}
        return command(catalog=chosen, **arguments)

    for flag, env, _, text, keywords in reversed(OPTIONS):
        run = click.option(flag, _name(flag), envvar=env, show_envvar=True, help=text, **keywords)(run)
    return run


def _name(flag: str) -> str:
    return flag.split("/")[0][2:].replace("-", "_")
