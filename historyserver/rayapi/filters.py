"""The state API's query parameters as Ray 2.60 reads them (`ray.dashboard.state_api_utils.options_from_req`,
`convert_filters_type`, `do_filter`): the same defaults, conversions, predicates and refusals with Ray's
wording, but applied in SQL so a million-task session is filtered without building a million dicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .envelope import StateApiError
from .resources import BOOL, INT, Resource

DEFAULT_LIMIT = 100  # ray.util.state.common.DEFAULT_LIMIT
MAX_LIMIT = 2**62
PREDICATES = ("=", "!=")
EN_DASH = "\u2013"
ACTOR_STATES = ("DEPENDENCIES_UNREADY", "PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD")
NODE_STATES = ("ALIVE", "DEAD")
# The task filters Ray's GCS applies itself (`_build_task_events_request`): Ray's `total` counts after them.
TASK_SOURCE_FILTERS = frozenset({"actor_id", "job_id", "task_id", "name", "state"})


@dataclass(frozen=True)
class Options:
    limit: int = DEFAULT_LIMIT
    detail: bool = False
    exclude_driver: bool = True
    filters: list[tuple[str, str, str]] = field(default_factory=list)


def to_bool(value: str) -> bool:
    """`convert_string_to_type(value, bool)`."""
    if value in ("False", "false", "0"):
        return False
    if value in ("True", "true", "1"):
        return True
    raise StateApiError(f"Failed to convert a value {value} of type {type(value)} to {bool}")


def to_int(value: str) -> int:
    """`int(value)` as `options_from_req` calls it (its ValueError becomes the 400's message)."""
    try:
        return int(value)
    except ValueError as exc:
        raise StateApiError(str(exc)) from exc


def options(query: Mapping[str, str], multi: Mapping[str, Sequence[str]]) -> Options:
    """`options_from_req`. `timeout` is read (a bad one is refused as Ray refuses it) and otherwise unused:
    nothing here waits on a cluster. Unlike Ray, a limit above RAY_MAX_LIMIT_FROM_API_SERVER (10,000) is
    not refused: a finished session is answered whole when asked for."""
    limit = to_int(query["limit"]) if query.get("limit") is not None else DEFAULT_LIMIT
    if limit < 0:
        # Ray's islice would raise a ValueError (a 500 there); a 400 says what is wrong.
        raise StateApiError(f"Given limit {limit} is negative. Use a limit of 0 or more.")
    if limit > MAX_LIMIT:
        # DuckDB binds LIMIT as a 64-bit integer: past it, a 400 with the reason rather than its error.
        raise StateApiError(f"Given limit {limit} is too large. Use a limit of at most {MAX_LIMIT}.")
    to_int(query.get("timeout", "30"))
    keys, predicates, values = multi["filter_keys"], multi["filter_predicates"], multi["filter_values"]
    if len(keys) != len(values):
        # Ray asserts this (an AssertionError, a 500); a 400 with the reason is kinder and as safe.
        raise StateApiError(f"filter_keys ({len(keys)}) and filter_values ({len(values)}) must pair up")
    filters = list(zip(keys, predicates, values, strict=False))  # Ray's zip: an unpaired predicate is dropped
    return Options(
        limit=limit,
        detail=to_bool(query.get("detail", "False")),
        exclude_driver=to_bool(query.get("exclude_driver", "True")),
        filters=filters,
    )


@dataclass
class Where:
    """SQL conditions: `source` as Ray's data source applies them (they shape `total`), `all` every one."""

    source: list[str] = field(default_factory=list)
    source_params: list[Any] = field(default_factory=list)
    all: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, clause: str, params: list[Any], source: bool) -> None:
        self.all.append(clause)
        self.params += params
        if source:
            self.source.append(clause)
            self.source_params += params


def where(resource: Resource, opts: Options) -> Where:
    """The filters as SQL over the resource's table (aliased `t`), refused with Ray's messages.

    Ray's semantics kept: keys are lowercased; strings compare case-insensitively; `!=` matches a missing
    value; ints and booleans are converted from the query's text first. Ray checks a key only against
    the rows it has (an empty list refuses nothing); here a bad key or predicate is refused always.
    """
    found = Where()
    if resource.hidden:
        found.add(f"NOT ({resource.hidden})", [], source=True)
    if resource.name == "tasks" and opts.exclude_driver:
        found.add("coalesce(t.type, '') <> 'DRIVER_TASK'", [], source=True)
    for raw_key, predicate, raw_value in opts.filters:
        key = raw_key.lower()
        if key not in resource.filterable:
            columns = "{" + ", ".join(repr(name) for name in sorted(resource.filterable)) + "}"
            raise StateApiError(
                # Ray's wording, its en dashes included.
                f"The given filter column {key} is not supported. Enter filters with {EN_DASH}-filter key=value "
                f"or {EN_DASH}-filter key!=value Supported filter columns: {columns}"
            )
        if predicate not in PREDICATES:
            raise StateApiError(f"Unsupported filter predicate {predicate} is given. Available predicates: =, !=.")
        expr, kind = resource.columns[key]
        value: Any = raw_value
        if kind == INT:
            try:
                value = int(raw_value)
            except ValueError:
                raise StateApiError(
                    f"Invalid filter `--filter {key} {raw_value}` for a int type column. Please provide an integer "
                    f"filter `--filter {key} [int]`"
                ) from None
        elif kind == BOOL:
            try:
                value = to_bool(raw_value)
            except StateApiError:
                raise StateApiError(
                    f"Invalid filter `--filter {key} {raw_value}` for a boolean type column. Please provide "
                    f"`--filter {key} [True|true|1]` for True or `--filter {key} [False|false|0]` for False."
                ) from None
        _check_source_value(resource, key, predicate, raw_value)
        column, param = (f"lower({expr})", "lower(?)") if kind not in (INT, BOOL) else (expr, "?")
        clause = f"{column} = {param}" if predicate == "=" else f"({expr} IS NULL OR {column} <> {param})"
        found.add(clause, [value], source=resource.name == "tasks" and key in TASK_SOURCE_FILTERS)
    return found


def _check_source_value(resource: Resource, key: str, predicate: str, value: str) -> None:
    """The values Ray's data source refuses before any filtering (`state_manager.get_all_*_info`)."""
    if predicate != "=" or key != "state":
        return
    if resource.name == "actors" and value.upper() not in ACTOR_STATES:
        raise StateApiError(f"Invalid actor state for filtering: {value.upper()}")
    if resource.name == "nodes" and value not in NODE_STATES:
        raise StateApiError(f"Invalid node state for filtering: {value}")


def sql(clauses: list[str]) -> str:
    return ("WHERE " + " AND ".join(clauses)) if clauses else ""
