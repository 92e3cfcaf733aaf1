"""Every query the API runs, in one place. Parameters are bound; names come only from allow-lists."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import duckdb
import msgspec
import numpy as np

from .errors import BadRequest, NotFound

MAX_LIMIT = 1000
# DuckDB binds LIMIT and OFFSET as 64-bit integers, and a page's end (offset + limit) must fit too: an offset
# past this is refused with a reason, not a conversion error (a 500) from DuckDB.
MAX_OFFSET = 2**62


def check_page(limit: int, offset: int) -> None:
    """BadRequest, saying what is allowed, for a limit or offset out of range."""
    if not 0 < limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    if not 0 <= offset <= MAX_OFFSET:
        raise BadRequest(f"offset must be between 0 and {MAX_OFFSET}")


@dataclass(frozen=True)
class ListQuery:
    """Filters (column -> value, all must match), a sort key ("-" for descending) and a page."""

    filters: dict[str, Any] = field(default_factory=dict)
    sort: str | None = None
    limit: int = 100
    offset: int = 0
    detail: bool = True  # every column; else the table's summary columns, as Ray's state API without detail
    include_hidden: bool = False  # also the rows the table's lists leave out


@dataclass(frozen=True)
class Table:
    """How the API lists one snapshot table."""

    name: str
    sortable: frozenset[str]
    default_sort: str
    json_columns: frozenset[str] = frozenset()  # stored as JSON text, answered as JSON
    summary_columns: tuple[str, ...] = ()  # a page without detail answers these (all if empty)
    hidden: str = ""  # SQL true of the rows lists leave out unless asked


TASKS = Table(
    "tasks",
    frozenset({"creation_time_ms", "start_time_ms", "end_time_ms", "duration_ms", "name", "func_or_class_name",
               "state", "attempt_number", "job_id", "node_id"}),
    "creation_time_ms",
    frozenset({"required_resources", "state_times", "task_log_info", "label_selector"}),
    # Ray's own list without detail, with the error message and times a list of tasks is read for, and
    # whether the end is unknown (a live state in an ended session is read with it).
    ("task_id", "attempt_number", "name", "state", "job_id", "actor_id", "type", "func_or_class_name",
     "parent_task_id", "node_id", "worker_id", "worker_pid", "error_type", "error_message", "creation_time_ms",
     "start_time_ms", "end_time_ms", "duration_ms", "is_retry", "end_unknown"),
    # A driver's own task: Ray's state API leaves them out, and Ray's internal drivers run until the
    # cluster ends, their end never reported.
    "type = 'DRIVER_TASK'",
)  # fmt: skip
ACTORS = Table(
    "actors",
    frozenset({"start_time_ms", "end_time_ms", "class_name", "name", "state", "job_id", "node_id", "num_restarts"}),
    "start_time_ms", frozenset({"required_resources", "death_cause", "state_times", "label_selector"}),
)  # fmt: skip
JOBS = Table(
    "jobs", frozenset({"start_time_ms", "end_time_ms", "status", "submission_id", "job_id"}),
    "start_time_ms", frozenset({"metadata", "runtime_env"}),
)  # fmt: skip
NODES = Table(
    "nodes", frozenset({"start_time_ms", "end_time_ms", "state", "node_ip"}), "start_time_ms",
    frozenset({"resources_total", "labels"}),
)  # fmt: skip
WORKERS = Table(
    "workers", frozenset({"start_time_ms", "end_time_ms", "node_id", "pid", "job_id"}),
    "start_time_ms",
)  # fmt: skip
PLACEMENT_GROUPS = Table(
    "placement_groups",
    frozenset({"placement_group_id", "state", "name", "creator_job_id"}), "placement_group_id",
    frozenset({"bundles", "stats"}),
)  # fmt: skip


def order_by(table: Table, sort: str | None) -> str:
    key = sort or table.default_sort
    column = key.removeprefix("-")
    if column not in table.sortable:
        allowed = ", ".join(sorted(table.sortable))
        raise BadRequest(f"cannot sort {table.name} by {column!r}; sort by one of: {allowed} (prefix - to reverse)")
    direction = "DESC" if key.startswith("-") else "ASC"
    # Ties in the order the snapshot holds the rows: stable for as long as the snapshot is, and several
    # times cheaper to sort by than the key's text.
    return f'"{column}" {direction} NULLS LAST, rowid'


def page(cur: duckdb.DuckDBPyConnection, table: Table, query: ListQuery,
         ordering: Ordering | None = None) -> tuple[int, list[dict[str, Any]]]:  # fmt: skip
    """The total of matching rows and one page of them.

    Only row ids and sort keys are sorted; the page's rows are fetched after, so wide rows stay out of
    the sort. With `ordering` (a table with many rows), the matching rows' positions in the sort order
    are computed once per filter and sort, and a page is a range of them, however deep.
    """
    check_page(query.limit, query.offset)
    where, params = _where(query.filters, "" if query.include_hidden else table.hidden)
    order = order_by(table, query.sort)
    if ordering is not None:
        total, ids = ordering.page(cur, where, params, order, query.limit, query.offset)
    else:
        total = cur.execute(f'SELECT count(*) FROM "{table.name}" {where}', params).fetchone()[0]  # type: ignore[index]
        sql = f'SELECT rowid FROM "{table.name}" {where} ORDER BY {order} LIMIT ? OFFSET ?'
        ids = [row[0] for row in cur.execute(sql, [*params, query.limit, query.offset]).fetchall()]
    columns = table.summary_columns if table.summary_columns and not query.detail else None
    return int(total), rows_by_id(cur, table, ids, columns)


def rows_by_id(cur: duckdb.DuckDBPyConnection, table: Table, ids: list[int], columns: tuple[str, ...] | None = None,
               computed: dict[str, str] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Rows (all columns, or these) by row id, in the order of `ids`; `computed` gives some columns as SQL
    over the row (aliased `t`) instead of as stored.

    DuckDB reads each column whole to find the rows, so every column left out makes this faster.
    """
    if not ids:
        return []
    computed = computed or {}
    if columns:
        selected = ", ".join(f'{computed.get(column, f"t.{column}")} AS "{column}"' for column in columns)
    else:
        selected = "t.*" + (" REPLACE (" + ", ".join(f'{sql} AS "{name}"' for name, sql in computed.items()) + ")"
                             if computed else "")  # fmt: skip
    sql = f"""SELECT {selected}
              FROM (SELECT unnest(?::BIGINT[]) AS id, generate_subscripts(?::BIGINT[], 1) AS position) p
              JOIN "{table.name}" t ON t.rowid = p.id ORDER BY p.position"""
    return rows(cur.execute(sql, [ids, ids]), table.json_columns)


class Ordering:
    """The rows of a table that match a filter, numbered in one sort order: computed on first use (a
    quarter of a second for a million rows, milliseconds for a filter's thousands) and kept, since an
    opened session's tables never change (a running session is opened anew when its events do). A page,
    and people page through a filter, is then a slice of row ids and its total their count.

    The `keep` most recently used are kept, as arrays of row ids in memory (4 bytes a row): a slice of one
    costs nothing, where a query of a kept table cost a fifth of a page's time.
    """

    def __init__(self, table: Table, keep: int = 16) -> None:
        self.table = table
        self.keep = keep
        self._built: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the kept arrays; never held across a query
        self._building = threading.Lock()  # one numbering built at a time (each sorts the whole table)

    def page(self, cur: duckdb.DuckDBPyConnection, where: str, params: list[Any], order: str, limit: int,
             offset: int) -> tuple[int, list[int]]:  # fmt: skip
        """(how many rows match, the row ids of the page). `where` and `order` may name the table `t`."""
        ids = self._numbering(cur, (where, *params, order), where, params, order)
        return len(ids), ids[offset : offset + limit].tolist()

    def _numbering(self, cur: duckdb.DuckDBPyConnection, key: tuple[Any, ...], where: str, params: list[Any],
                   order: str) -> np.ndarray:  # fmt: skip
        found = self._kept(key)
        if found is not None:
            return found
        with self._building:
            found = self._kept(key)  # built by another request meanwhile
            if found is not None:
                return found
            sql = f'SELECT rowid AS id FROM "{self.table.name}" t {where} ORDER BY {order}'
            ids = cur.execute(sql, params).fetchnumpy()["id"]
            ids = ids.astype(np.int32) if len(ids) < 2**31 and (len(ids) == 0 or ids.max() < 2**31) else ids
            with self._lock:
                self._built[key] = ids
                while len(self._built) > self.keep:
                    self._built.popitem(last=False)
            return ids

    def _kept(self, key: tuple[Any, ...]) -> np.ndarray | None:
        with self._lock:
            found = self._built.get(key)
            if found is not None:
                self._built.move_to_end(key)
            return found


def one(cur: duckdb.DuckDBPyConnection, table: Table, **key: Any) -> dict[str, Any]:
    where, params = _where(key)
    found = rows(cur.execute(f'SELECT * FROM "{table.name}" {where} LIMIT 1', params), table.json_columns)
    if not found:
        what = ", ".join(f"{name} {value}" for name, value in key.items())
        raise NotFound(f"no {table.name[:-1].replace('_', ' ')} with {what} in this session")
    return found[0]


def _where(filters: dict[str, Any], hidden: str = "") -> tuple[str, list[Any]]:
    """WHERE: every filter that is not None must hold, and `hidden` (SQL of rows left out) must not."""
    clauses = [f"NOT coalesce({hidden}, false)"] if hidden else []
    params: list[Any] = []
    for column, value in filters.items():
        if value is None:
            continue
        clauses.append(f'"{column}" = ?')
        params.append(value)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def rows(result: duckdb.DuckDBPyConnection, json_columns: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    names = [column[0] for column in result.description or []]
    decoded = json_columns.intersection(names)
    found = [dict(zip(names, values, strict=True)) for values in result.fetchall()]
    for row in found if decoded else ():
        for column in decoded:
            if isinstance(row[column], str):
                row[column] = msgspec.json.decode(row[column])
    return found


# --- tasks ---------------------------------------------------------------------------------------

TASK_SUMMARY = """
    SELECT func_or_class_name, count(*) AS attempts,
           count(*) FILTER (WHERE state = 'FINISHED') AS finished,
           count(*) FILTER (WHERE state = 'FAILED') AS failed,
           count(*) FILTER (WHERE state NOT IN ('FINISHED', 'FAILED')) AS other,
           min(duration_ms) AS duration_ms_min,
           quantile_cont(duration_ms, 0.25) AS duration_ms_p25,
           quantile_cont(duration_ms, 0.5) AS duration_ms_p50,
           quantile_cont(duration_ms, 0.75) AS duration_ms_p75,
           quantile_cont(duration_ms, 0.95) AS duration_ms_p95,
           max(duration_ms) AS duration_ms_max
    FROM tasks {where} GROUP BY func_or_class_name ORDER BY attempts DESC, func_or_class_name
"""

STATE_COUNTS = "SELECT state, count(*) AS count FROM {table} {where} GROUP BY state ORDER BY count DESC, state"


def task_summary(cur: duckdb.DuckDBPyConnection, job_id: str | None) -> list[dict[str, Any]]:
    where, params = _where({"job_id": job_id}, TASKS.hidden)
    return rows(cur.execute(TASK_SUMMARY.format(where=where), params))


def task_attempts(cur: duckdb.DuckDBPyConnection, task_id: str) -> list[dict[str, Any]]:
    found = rows(
        cur.execute("SELECT * FROM tasks WHERE task_id = ? ORDER BY attempt_number", [task_id]), TASKS.json_columns
    )
    if not found:
        raise NotFound(f"no task {task_id} in this session")
    return found


def child_tasks(cur: duckdb.DuckDBPyConnection, task_id: str, limit: int = 100) -> tuple[int, list[dict[str, Any]]]:
    """The attempts of the tasks this task submitted (their first MAX), and how many there are."""
    total = cur.execute("SELECT count(*) FROM tasks WHERE parent_task_id = ?", [task_id]).fetchone()[0]  # type: ignore[index]
    sql = f"""SELECT {", ".join(TASKS.summary_columns)} FROM tasks WHERE parent_task_id = ?
              ORDER BY creation_time_ms NULLS LAST, rowid LIMIT ?"""
    return int(total), rows(cur.execute(sql, [task_id, limit]))


def job_status_counts(cur: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Jobs by status, Ray's internal drivers left out (as /api/jobs/ leaves them out)."""
    sql = "SELECT status, count(*) FROM jobs WHERE NOT coalesce(is_hidden, false) GROUP BY status ORDER BY status"
    return {status: count for status, count in cur.execute(sql).fetchall()}


def failure_counts(cur: duckdb.DuckDBPyConnection, job_id: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
    """The functions that failed most, with their most common error type and a message of it."""
    where, params = _where({"job_id": job_id, "state": "FAILED"}, TASKS.hidden)
    sql = f"""SELECT func_or_class_name, count(*) AS failed, mode(error_type) AS error_type,
                     any_value(error_message) AS error_message
              FROM tasks {where} GROUP BY func_or_class_name ORDER BY failed DESC, func_or_class_name LIMIT ?"""
    return rows(cur.execute(sql, [*params, limit]))


# What the events left out, in the rows a list shows (a driver's own task is hidden): ends never reported
# (end_unknown) and entities known only from their lifecycle, their definition never received.
INCOMPLETE = """
    SELECT t.*, a.*
    FROM (SELECT count(*) FILTER (WHERE end_unknown) AS tasks_end_unknown,
                 count(*) FILTER (WHERE type IS NULL) AS tasks_without_definition
          FROM tasks {tasks_where}) AS t,
         (SELECT count(*) FILTER (WHERE end_unknown) AS actors_end_unknown,
                 count(*) FILTER (WHERE class_name IS NULL) AS actors_without_definition
          FROM actors) AS a
"""

# Ray's own count of the task events it dropped, by type (STATUS_EVENT, PROFILE_EVENT). The GCS reports a
# running total as a gauge: each series' greatest value, summed over series (a restarted GCS starts anew).
DROPPED_TASK_EVENTS = """
    SELECT kind, sum(dropped)::BIGINT AS dropped
    FROM (SELECT coalesce(labels->>'Type', 'UNKNOWN') AS kind, max(value) AS dropped
          FROM metrics WHERE name = 'ray_gcs_task_manager_task_events_dropped' GROUP BY node, labels)
    GROUP BY kind ORDER BY kind
"""


def incomplete_counts(cur: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """How many tasks and actors the source left incomplete: an end never reported, a definition never sent."""
    where, _ = _where({}, TASKS.hidden)
    result = cur.execute(INCOMPLETE.format(tasks_where=where))
    return {name: int(value) for name, value in rows(result)[0].items()}


def dropped_task_events(cur: duckdb.DuckDBPyConnection) -> dict[str, int] | None:
    """Task events Ray says it dropped, by type; None when the archive has no sample of its counter."""
    found = rows(cur.execute(DROPPED_TASK_EVENTS))
    return {row["kind"]: int(row["dropped"]) for row in found} if found else None


def cluster_resources(nodes: list[dict[str, Any]]) -> dict[str, float]:
    """What the cluster's nodes offered together (CPU, GPU, memory...), each node counted once."""
    total: dict[str, float] = {}
    for node in nodes:
        for name, amount in (node.get("resources_total") or {}).items():
            # "node:<ip>" and "node:__internal_head__" only mark a node: a sum of them means nothing.
            if isinstance(amount, int | float) and not name.startswith("node:"):
                total[name] = total.get(name, 0) + amount
    return dict(sorted(total.items()))


def state_counts(cur: duckdb.DuckDBPyConnection, table: Table) -> dict[str, int]:
    where, _ = _where({}, table.hidden)
    return {state: count for state, count in cur.execute(STATE_COUNTS.format(table=table.name, where=where)).fetchall()}


# --- raw events ----------------------------------------------------------------------------------

EVENT_FILTERS = ("event_type", "task_id", "actor_id", "job_id", "node_id", "worker_id", "placement_group_id",
                 "submission_id")  # fmt: skip


def events_page(cur: duckdb.DuckDBPyConnection, filters: dict[str, Any], limit: int, offset: int,
                ) -> tuple[int, list[dict[str, Any]]]:  # fmt: skip
    check_page(limit, offset)
    where, params = _where(filters)
    # Retried batches can repeat an event: one row per event id.
    deduped = f"(SELECT * FROM events {where} QUALIFY row_number() OVER (PARTITION BY event_id) = 1)"
    total = cur.execute(f"SELECT count(*) FROM {deduped}", params).fetchone()[0]  # type: ignore[index]
    sql = f"""SELECT * EXCLUDE (timestamp), epoch_ns(timestamp) AS timestamp_ns FROM {deduped}
              ORDER BY timestamp_ns, event_id LIMIT ? OFFSET ?"""
    return int(total), rows(cur.execute(sql, [*params, limit, offset]), frozenset({"payload"}))


# --- logs ----------------------------------------------------------------------------------------

# A file is known by its latest name (rotation renames it); where a name has several generations
# (truncated or re-created), the newest one is the file of that name.
LOG_FILES = """
    WITH generations AS (
        SELECT file_id, arg_max(file, read_at) AS file, any_value(node) AS node, any_value(node_id) AS node_id,
               min(read_at) AS first_read, max(read_at) AS last_read,
               sum(coalesce(octet_length(raw), strlen(text)) + newline::INT)
                   FILTER (WHERE omitted_bytes IS NULL) AS size_bytes,
               count(*) FILTER (WHERE newline) AS lines,
               sum(omitted_bytes) AS omitted_bytes,
               any_value(job_id) AS job_id, any_value(worker_id) AS worker_id, any_value(pid) AS pid,
               any_value(submission_id) AS submission_id
        FROM logs GROUP BY file_id
    )
    SELECT node, node_id, substr(file, 6) AS filename, file_id, size_bytes, lines, omitted_bytes, job_id,
           worker_id, pid, submission_id, epoch_ns(last_read) // 1000000 AS last_read_ms
    FROM generations {where}
    QUALIFY row_number() OVER (PARTITION BY node, file ORDER BY first_read DESC) = 1
    ORDER BY node, filename
"""


def log_files(cur: duckdb.DuckDBPyConnection, node_id: str | None = None, filename: str | None = None,
              ) -> list[dict[str, Any]]:  # fmt: skip
    clauses, params = _file_clauses(node_id, filename)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    return rows(cur.execute(LOG_FILES.format(where=where), params))


def _file_clauses(node_id: str | None, filename: str | None) -> tuple[list[str], list[Any]]:
    """Conditions on the node (its Ray id or its name in the archive) and the file (relative to logs/)."""
    clauses: list[str] = []
    params: list[Any] = []
    if node_id is not None:
        clauses.append("(node_id = ? OR node = ?)")
        params += [node_id, node_id]
    if filename is not None:
        clauses.append("file = ?")
        params.append("logs/" + filename)
    return clauses, params


def log_file(cur: duckdb.DuckDBPyConnection, node_id: str, filename: str) -> dict[str, Any]:
    found = log_files(cur, node_id, filename)
    if not found:
        raise NotFound(f"no log file {filename!r} from node {node_id} in this session")
    return found[0]


LOG_ROWS = """
    SELECT "offset", line_number, text, raw, newline, omitted_bytes FROM logs
    WHERE file_id = ? {extra} ORDER BY "offset", line_number
"""


def log_rows(cur: duckdb.DuckDBPyConnection, file_id: str, extra: str = "", params: tuple[Any, ...] = ()) -> Any:
    """A file's rows in order, as an Arrow table (what archive.logs.rebuild_file takes)."""
    return cur.sql(LOG_ROWS.format(extra=extra), params=[file_id, *params]).to_arrow_table()


def log_lines(cur: duckdb.DuckDBPyConnection, file_id: str, start_line: int, count: int) -> list[dict[str, Any]]:
    sql = """SELECT line_number, string_agg(text, '' ORDER BY "offset") AS text FROM logs
             WHERE file_id = ? AND omitted_bytes IS NULL AND line_number >= ? AND line_number < ?
             GROUP BY line_number ORDER BY line_number"""
    return rows(cur.execute(sql, [file_id, start_line, start_line + count]))


def last_line_number(cur: duckdb.DuckDBPyConnection, file_id: str) -> int:
    found = cur.execute("SELECT max(line_number) FROM logs WHERE file_id = ?", [file_id]).fetchone()
    return int(found[0] or 0) if found else 0


def search_logs(cur: duckdb.DuckDBPyConnection, pattern: str, node_id: str | None, filename: str | None,
                limit: int) -> list[dict[str, Any]]:  # fmt: skip
    on_file, file_params = _file_clauses(node_id, filename)
    clauses = ["omitted_bytes IS NULL", "regexp_matches(text, ?)", *on_file]
    params = [pattern, *file_params]
    sql = f"""SELECT node_id, substr(file, 6) AS filename, line_number, text, task_name, actor_name, job_id
              FROM logs WHERE {" AND ".join(clauses)} ORDER BY node, file, "offset" LIMIT ?"""
    try:
        return rows(cur.execute(sql, [*params, limit]))
    except duckdb.InvalidInputException as exc:
        raise BadRequest(f"not a valid regular expression (RE2 syntax): {exc}") from exc


def job_log_files(cur: duckdb.DuckDBPyConnection, job_id: str) -> list[dict[str, Any]]:
    return [file for file in log_files(cur) if file["job_id"] == job_id or file["submission_id"] == job_id]


# --- timeline ------------------------------------------------------------------------------------

TIMELINE = """
    SELECT p.task_id, p.attempt_number, p.job_id, p.node_id, p.worker_id, p.component_type, p.event_name,
           p.start_time_ns, p.end_time_ns, p.extra_data, t.name AS task_name, t.func_or_class_name, t.actor_id
    FROM task_profile_events p
    LEFT JOIN tasks t ON t.task_id = p.task_id AND t.attempt_number = p.attempt_number
    {where} ORDER BY p.start_time_ns
"""


def timeline(cur: duckdb.DuckDBPyConnection, job_id: str | None) -> list[dict[str, Any]]:
    """Chrome trace events (the JSON `chrome://tracing` and Perfetto open), one per profile span."""
    where, params = ("WHERE p.job_id = ?", [job_id]) if job_id else ("", [])
    trace = []
    for span in rows(cur.execute(TIMELINE.format(where=where), params)):
        start, end = span["start_time_ns"], span["end_time_ns"]
        trace.append({
            "name": span["event_name"], "cat": span["component_type"] or "task", "ph": "X",
            "ts": start / 1000, "dur": max(0, (end or start) - start) / 1000,
            "pid": f"node:{span['node_id']}", "tid": f"worker:{span['worker_id']}",
            "args": {**_extra_data(span["extra_data"]),
                     "task_id": span["task_id"], "attempt_number": span["attempt_number"],
                     "job_id": span["job_id"], "name": span["task_name"],
                     "func_or_class_name": span["func_or_class_name"], "actor_id": span["actor_id"]},
        })  # fmt: skip
    return trace


def _extra_data(text: str | None) -> dict[str, Any]:
    """A span's extra data as Ray's timeline puts it in `args`: its keys (a failed task's type, value and
    traceback) before the task's own; text that is not a JSON object is kept whole under `extra_data`."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"extra_data": text}
    return value if isinstance(value, dict) else {"extra_data": text}


def log_slice(cur: duckdb.DuckDBPyConnection, node_id: str | None, filename: str, start: int, end: int) -> Any:
    """The rows of a file between two byte offsets (a task's output, as taskLogInfo marks it)."""
    found = log_files(cur, node_id, filename)
    if not found:
        raise NotFound(f"no log file {filename!r} in this session")
    return log_rows(cur, found[0]["file_id"], 'AND "offset" >= ? AND "offset" < ?', (start, end))


def line_at_offset(cur: duckdb.DuckDBPyConnection, node_id: str | None, filename: str, offset: int) -> int | None:
    """The number of the line a byte offset falls in (to link a task's output to its place in the file)."""
    found = log_files(cur, node_id, filename)
    if not found:
        return None
    sql = 'SELECT max(line_number) FROM logs WHERE file_id = ? AND "offset" <= ?'
    return cur.execute(sql, [found[0]["file_id"], offset]).fetchone()[0]  # type: ignore[index]


def marked_lines(cur: duckdb.DuckDBPyConnection, worker_id: str, task_name: str, stream: str) -> list[dict[str, Any]]:
    """Lines a worker printed under a task's `:task_name:` marker (the marker lines left out)."""
    suffix = ".out" if stream == "stdout" else ".err"
    sql = """SELECT substr(file, 6) AS filename, line_number, text FROM logs
             WHERE worker_id = ? AND task_name = ? AND ends_with(file, ?) AND omitted_bytes IS NULL
               AND NOT starts_with(text, ':task_name:')
             ORDER BY file, "offset"
    """
    return rows(cur.execute(sql, [worker_id, task_name, suffix]))


def worker_log_files(cur: duckdb.DuckDBPyConnection, worker_id: str) -> list[dict[str, Any]]:
    return [
        file for file in log_files(cur) if file["worker_id"] == worker_id and file["filename"].startswith("worker-")
    ]


# --- metrics -------------------------------------------------------------------------------------

METRIC_NAMES = """
    SELECT name, any_value(type) AS type, count(*) AS samples, count(DISTINCT labels) AS series,
           count(DISTINCT node) AS nodes, epoch_ns(min(timestamp)) // 1000000 AS first_ms,
           epoch_ns(max(timestamp)) // 1000000 AS last_ms
    FROM metrics {where} GROUP BY name ORDER BY name
"""

# Samples are first averaged per series (node and labels) in each step, then aggregated across the
# series of a node (by node) or of the whole cluster: a sum of gauges over nodes, not of samples.
METRIC_RANGE = """
    WITH per_series AS (
        SELECT time_bucket(to_microseconds(?), timestamp::TIMESTAMPTZ) AS bucket, node, labels, avg(value) AS value
        FROM metrics WHERE name = ? AND timestamp >= to_timestamp(? / 1000) AND timestamp < to_timestamp(? / 1000)
        {label_filter}
        GROUP BY ALL
    )
    SELECT {group} epoch_ns(bucket) // 1000000 AS time_ms, {agg}(value) AS value
    FROM per_series GROUP BY ALL ORDER BY {order} time_ms
"""
AGGREGATIONS = {"sum": "sum", "avg": "avg", "max": "max", "min": "min"}
MAX_POINTS = 10_000


def metric_names(cur: duckdb.DuckDBPyConnection, prefix: str | None) -> list[dict[str, Any]]:
    where, params = ("WHERE starts_with(name, ?)", [prefix]) if prefix else ("", [])
    return rows(cur.execute(METRIC_NAMES.format(where=where), params))


def metric_range(cur: duckdb.DuckDBPyConnection, name: str, start_ms: int | None, end_ms: int | None, step_s: float,
                 agg: str, by_node: bool, labels: list[str]) -> list[dict[str, Any]]:  # fmt: skip
    """One series per node (or one for the cluster) of `name`, a point per step."""
    if agg not in AGGREGATIONS:
        raise BadRequest(f"agg must be one of {', '.join(AGGREGATIONS)}")
    if step_s < 1:
        raise BadRequest("step_s must be at least 1 second")
    bounds = cur.execute(
        "SELECT epoch_ns(min(timestamp)) // 1000000, epoch_ns(max(timestamp)) // 1000000 + 1 FROM metrics "
        "WHERE name = ?", [name],
    ).fetchone()  # fmt: skip
    if bounds is None or bounds[0] is None:
        raise NotFound(f"no samples of metric {name!r} in this session")
    start_ms = bounds[0] if start_ms is None else start_ms
    end_ms = bounds[1] if end_ms is None else end_ms
    if (end_ms - start_ms) / (step_s * 1000) > MAX_POINTS:
        raise BadRequest(f"more than {MAX_POINTS} points: widen step_s or narrow the time range")
    label_filter, params = "", []
    for term in labels:
        key, sep, value = term.partition("=")
        if not sep:
            raise BadRequest(f"labels are key=value, got {term!r}")
        label_filter += " AND labels->>? = ?"
        params += [key, value]
    sql = METRIC_RANGE.format(label_filter=label_filter, agg=AGGREGATIONS[agg], group="node," if by_node else "",
                              order="node," if by_node else "")  # fmt: skip
    points = rows(cur.execute(sql, [int(step_s * 1_000_000), name, start_ms, end_ms, *params]))
    series: dict[str, list[list[Any]]] = {}
    for point in points:
        series.setdefault(point.get("node", "cluster"), []).append([point["time_ms"], point["value"]])
    return [{"node": node, "points": values} for node, values in series.items()]
