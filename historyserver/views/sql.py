"""Read-only SQL over one session's views or the whole archive's, sandboxed (historyserver.sandbox).

Two ways in: `POST /api/v1/sql` (a body, any size, for scripts) and the console's `GET /sql?q=...`, whose
state is its URL so a query can be pasted to a colleague; its JSON twin is `GET /api/v1/sql?q=...` and a
`format` of csv, parquet or table downloads the same result.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import pyarrow as pa
from fastapi import Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ..access import viewer_of
from ..comparison import recent_sessions
from ..errors import BadRequest
from ..sandbox import QueryResult, SandboxError, format_result
from ..sqlpool import in_sql_pool
from ..sqlviews import sandbox_for
from .common import SESSION_PATH, FastJSON, Views, page_context, server_of
from .pages import render

views = Views("sql")

MEDIA_TYPES = {"json": "application/json", "csv": "text/csv", "parquet": "application/vnd.apache.parquet",
               "table": "text/plain"}  # fmt: skip
Format = Literal["json", "csv", "parquet", "table"]
DOWNLOAD_NAMES = {"csv": "query.csv", "parquet": "query.parquet"}

# The page shows this many rows: a browser lays out a few thousand cells fast, not a hundred thousand.
# The JSON twin and the downloads carry every row up to the server's sql_max_rows.
PAGE_ROWS = 1000

# What operators ask most, as starting points: each runs over one session or the whole archive.
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("Failed jobs per queue, last 7 days", """\
SELECT coalesce(s.queue, '(no queue)') AS queue, count(*) AS failed_jobs,
       count(DISTINCT j.session) AS sessions, max(j.start_time_ms) AS last_start_ms
FROM jobs j JOIN sessions s USING (namespace, cluster, session)
WHERE j.status = 'FAILED' AND j.start_time_ms >= epoch_ms(now() - INTERVAL 7 DAY)
GROUP BY ALL ORDER BY failed_jobs DESC"""),
    ("Slowest functions (p95)", """\
SELECT func_or_class_name, count(*) AS attempts,
       count(*) FILTER (WHERE state = 'FAILED') AS failed,
       round(quantile_cont(duration_ms, 0.5))::BIGINT AS p50_ms,
       round(quantile_cont(duration_ms, 0.95))::BIGINT AS p95_ms, max(duration_ms) AS max_ms
FROM tasks
WHERE type != 'DRIVER_TASK' AND duration_ms IS NOT NULL
GROUP BY ALL ORDER BY p95_ms DESC LIMIT 25"""),
    ("Tasks per node", """\
SELECT t.session, t.node_id, any_value(n.node_ip) AS node_ip, count(*) AS attempts,
       count(*) FILTER (WHERE t.state = 'FAILED') AS failed
FROM tasks t LEFT JOIN nodes n USING (namespace, cluster, session, node_id)
WHERE t.type != 'DRIVER_TASK'
GROUP BY ALL ORDER BY attempts DESC"""),
    ("Why tasks failed", """\
SELECT error_type, func_or_class_name, count(*) AS attempts,
       any_value(error_message) AS example_message
FROM tasks WHERE state = 'FAILED'
GROUP BY ALL ORDER BY attempts DESC"""),
    ("Log lines with errors", """\
SELECT session, file, line_number, text
FROM logs
WHERE regexp_matches(text, '(?i)(error|exception|traceback)')
ORDER BY session, file, line_number LIMIT 200"""),
    ("Recent sessions", """\
SELECT namespace, cluster, session, status, owner_name, queue,
       epoch_ms(start_time_ms) AS started, round(duration_ms / 60000, 1) AS minutes
FROM sessions ORDER BY start_time_ms DESC LIMIT 50"""),
)  # fmt: skip
VIEW_NAMES = ("sessions", "jobs", "tasks", "actors", "nodes", "workers", "placement_groups", "events", "logs",
              "metrics")  # fmt: skip


class SqlRequest(BaseModel):
    sql: str = Field(..., description="one SELECT over sessions, jobs, tasks, actors, nodes, workers, "
                     "placement_groups, events, logs, metrics", max_length=100_000)  # fmt: skip
    session: str | None = Field(None, description="namespace/cluster/session; all sessions when absent")
    format: Format = "json"


# In the server's SQL pool: the sandbox is built here, the query runs in one of its worker processes.
@in_sql_pool(lambda request: server_of(request).sql)
def _run(request: Request, sql: str, session: str | None) -> QueryResult:
    """The query's result, or BadRequest with the sandbox's reason (meant for the user as it is)."""
    server = server_of(request)
    with sandbox_for(server, session, viewer=viewer_of(request)) as sandbox:
        try:
            return sandbox.run(sql, timeout_s=server.settings.sql_timeout, max_rows=server.settings.sql_max_rows)
        except SandboxError as exc:
            raise BadRequest(str(exc)) from exc


def _download(result: QueryResult, fmt: Format) -> Response:
    headers = {"X-Rows": str(result.num_rows), "X-Truncated": str(result.truncated).lower()}
    if fmt in DOWNLOAD_NAMES:
        headers["Content-Disposition"] = f'attachment; filename="{DOWNLOAD_NAMES[fmt]}"'
    return Response(format_result(result, fmt), media_type=MEDIA_TYPES[fmt], headers=headers)


@views.api.post("/sql")
def run_sql(request: Request, body: SqlRequest) -> Response:
    result = _run(request, body.sql, body.session)
    headers = {"X-Rows": str(result.num_rows), "X-Truncated": str(result.truncated).lower()}
    return Response(format_result(result, body.format), media_type=MEDIA_TYPES[body.format], headers=headers)


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def answer(request: Request, q: str | None, session: str | None) -> dict[str, Any]:
    """The console's data: the query and its result as columns and rows (lists, as a table reads them)."""
    sql = (q or "").strip()
    max_rows = server_of(request).settings.sql_max_rows
    base: dict[str, Any] = {"sql": sql or None, "session": session, "max_rows": max_rows}
    if not sql:
        return {**base, "columns": [], "types": [], "numeric": [], "rows": [], "row_count": 0, "truncated": False,
                "elapsed_ms": None}  # fmt: skip
    result = _run(request, sql, session)
    # The sandbox's JSON is what POST answers (ISO times, base64 bytes, JSON for nested values): the
    # same values here, as lists since a join can name two columns alike.
    rows = [list(row.values()) for row in json.loads(format_result(result, "json"))]
    schema = result.table.schema
    return {
        **base, "columns": schema.names, "types": [str(field.type) for field in schema],
        "numeric": [_is_number(field.type) for field in schema], "rows": rows, "row_count": result.num_rows,
        "truncated": result.truncated, "elapsed_ms": round(result.elapsed_s * 1000, 1),
    }  # fmt: skip


def _api(request: Request, q: str | None, session: str | None, fmt: Format) -> Response:
    if fmt != "json":
        if not (q or "").strip():
            raise BadRequest("q (the query) is needed for a download")
        return _download(_run(request, q or "", session), fmt)
    return FastJSON(answer(request, q, session))


def _page(request: Request, q: str | None, scope: str | None, fmt: Format, scoped: bool,
          **path: str) -> Response:  # fmt: skip
    """The console: the result, or the query kept in its box with the reason it failed (status 400).
    `scope` is the session queried (None: all); `path` the session page's own parameters, if any."""
    if fmt != "json":
        return _api(request, q, scope, fmt)
    status, error = 200, None
    try:
        data = answer(request, q, scope)
    except BadRequest as exc:
        status, error = 400, str(exc)
        data = {"sql": (q or "").strip() or None, "session": scope, "columns": [], "rows": [], "row_count": 0,
                "truncated": False}  # fmt: skip
    # Only the whole-archive console offers to narrow to a session; a session's console is that session.
    choices = [] if scoped else recent_sessions(server_of(request), limit=200, viewer=viewer_of(request))
    return render(request, "sql.html", status_code=status, data=data, error=error, examples=EXAMPLES,
                  view_names=VIEW_NAMES, page_rows=PAGE_ROWS, sessions=choices, scoped=scoped,
                  api_path="/api/v1" + request.url.path, **page_context(dict(path)))  # fmt: skip


QUERY = Query(None, description="one SELECT over the views (the console's URL keeps it)", max_length=100_000)
SESSION = Query(None, description="namespace/cluster/session; all sessions when absent")
FORMAT = Query("json", description="json: {columns, rows, truncated...}; csv, parquet or table: the result as a file")


@views.api.get("/sql")
def sql_json(request: Request, q: str | None = QUERY, session: str | None = SESSION,
             format: Format = FORMAT) -> Response:  # fmt: skip
    """The console's query over every session (or `session`): {sql, session, columns, types, rows, row_count,
    truncated, max_rows, elapsed_ms}, or the result as CSV, Parquet or text with `format`."""
    return _api(request, q, session or None, format)


@views.pages.get("/sql")
def sql_page(request: Request, q: str | None = QUERY, session: str | None = SESSION,
             format: Format = FORMAT) -> Response:  # fmt: skip
    return _page(request, q, session or None, format, scoped=False)


@views.api.get(SESSION_PATH + "/sql")
def session_sql_json(request: Request, namespace: str, cluster: str, session: str, q: str | None = QUERY,
                     format: Format = FORMAT) -> Response:  # fmt: skip
    """The console's query over this session's views only."""
    return _api(request, q, f"{namespace}/{cluster}/{session}", format)


@views.pages.get(SESSION_PATH + "/sql")
def session_sql_page(request: Request, namespace: str, cluster: str, session: str, q: str | None = QUERY,
                     format: Format = FORMAT) -> Response:  # fmt: skip
    return _page(request, q, f"{namespace}/{cluster}/{session}", format, scoped=True, namespace=namespace,
                 cluster=cluster, session=session)  # fmt: skip
