"""Logs of a session: the files per node, a file's exact bytes, a range or tail of lines, a regex
search, and all of a job's files as a zip."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import duckdb
from fastapi import Query, Request
from fastapi.responses import Response

from archive.logs import rebuild_file

from .. import logview, outputs, queries
from ..downloads import attachment
from ..errors import NotFound
from ..retention import note, refuse_expired
from .common import SESSION_PATH, Views, listing, open_session
from .pages import templates

views = Views("logs")
templates.env.filters.update(log_plain=logview.plain, log_marked=logview.marked)

MAX_LINES = 10_000
MAX_PATTERN = 1000


def logs_cursor(request: Request, namespace: str, cluster: str, session: str) -> duckdb.DuckDBPyConnection:
    """A cursor over the session's logs; 410 Gone, saying when and why, once retention removed them."""
    opened = open_session(request, namespace, cluster, session)
    refuse_expired(opened.expired, "logs")
    return opened.cursor("logs")


@views.get(SESSION_PATH + "/logs", template="logs.html")
def list_log_files(
    request: Request, namespace: str, cluster: str, session: str,
    node_id: str | None = Query(None, description="Ray's node id or the archive's node name"),
    name: str | None = Query(None, description="part of the file name, any case"),
) -> dict[str, Any]:  # fmt: skip
    """The files (filtered), with every node that shipped any (dead ones too) and every job they name;
    `expired` says when and why retention removed them (null while they are there)."""
    opened = open_session(request, namespace, cluster, session)
    cur = opened.cursor("logs")
    files = queries.log_files(cur)
    # An empty field of the page's form means "any", as an absent one does.
    shown = [file for file in files if (not node_id or node_id in (file["node_id"], file["node"]))
             and (not name or name.lower() in file["filename"].lower())]  # fmt: skip
    nodes = logview.log_nodes(files, logview.node_states(cur))
    return {**listing(len(shown), shown), "nodes": nodes, "jobs": logview.log_jobs(files),
            "expired": note(opened.expired, "logs")}  # fmt: skip


@views.get(SESSION_PATH + "/logs/file")
def download_log_file(request: Request, namespace: str, cluster: str, session: str, node_id: str,
                      filename: str) -> Response:  # fmt: skip
    """The file's exact bytes, as Ray's /api/v0/logs/file gives them."""
    cur = logs_cursor(request, namespace, cluster, session)
    found = queries.log_file(cur, node_id, filename)
    data = rebuild_file(queries.log_rows(cur, found["file_id"]))
    name = filename.rsplit("/", 1)[-1]
    return Response(data, media_type="text/plain", headers={"Content-Disposition": attachment(name)})


@views.get(SESSION_PATH + "/logs/lines", template="log_file.html")
def read_log_lines(
    request: Request, namespace: str, cluster: str, session: str, node_id: str, filename: str,
    start_line: int = Query(1, ge=1), lines: int = Query(1000, ge=1, le=MAX_LINES),
    tail: int | None = Query(None, ge=1, le=MAX_LINES, description="the last N lines instead"),
) -> dict[str, Any]:  # fmt: skip
    cur = logs_cursor(request, namespace, cluster, session)
    found = queries.log_file(cur, node_id, filename)
    last = queries.last_line_number(cur, found["file_id"])
    if tail is not None:
        start_line, lines = max(1, last - tail + 1), tail
    items = queries.log_lines(cur, found["file_id"], start_line, lines)
    # Where this range sits in the file, for paging; and what the archive never had, so a gap is explained.
    return {**found, "total": len(items), "items": items, "start_line": start_line, "last_line": last,
            "left_out": logview.left_out(cur, found["file_id"])}  # fmt: skip


@views.get(SESSION_PATH + "/logs/search", template="log_search.html")
def search_logs(
    request: Request, namespace: str, cluster: str, session: str,
    pattern: str = Query(..., min_length=1, max_length=MAX_PATTERN, description="a regular expression (RE2)"),
    node_id: str | None = None, filename: str | None = None, limit: int = Query(100, ge=1, le=MAX_LINES),
) -> dict[str, Any]:  # fmt: skip
    cur = logs_cursor(request, namespace, cluster, session)
    # An empty field of the page's form means "any", as an absent one does.
    items = queries.search_logs(cur, pattern, node_id or None, filename or None, limit)
    for item, matched in zip(items, logview.matched_texts(cur, pattern, [item["text"] for item in items]), strict=True):
        item["matched"] = matched
    return listing(len(items), items)


@views.get(SESSION_PATH + "/logs/job/{job_id}.zip")
def download_job_logs(request: Request, namespace: str, cluster: str, session: str, job_id: str) -> Response:
    """Every file of a job's workers and driver (by job id or submission id), in a zip."""
    cur = logs_cursor(request, namespace, cluster, session)
    files = queries.job_log_files(cur, job_id)
    if not files:
        raise NotFound(f"no log file names job {job_id} in this session")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            archive.writestr(f"{file['node']}/{file['filename']}", rebuild_file(queries.log_rows(cur, file["file_id"])))
    return Response(buffer.getvalue(), media_type="application/zip",
                    headers={"Content-Disposition": attachment(f"{session}-{job_id}-logs.zip")})  # fmt: skip


@views.get(SESSION_PATH + "/tasks/{task_id}/logs")
def task_logs(
    request: Request, namespace: str, cluster: str, session: str, task_id: str, attempt_number: int | None = None,
    stream: str = Query("stdout", pattern="^(stdout|stderr)$"),
) -> dict[str, Any]:  # fmt: skip
    """What one attempt printed: the byte range of its worker's file that Ray's taskLogInfo marks."""
    cur = logs_cursor(request, namespace, cluster, session)
    return outputs.task_output(cur, task_id, attempt_number, stream)


@views.get(SESSION_PATH + "/actors/{actor_id}/logs")
def actor_logs(request: Request, namespace: str, cluster: str, session: str, actor_id: str,
               stream: str = Query("stdout", pattern="^(stdout|stderr)$")) -> dict[str, Any]:  # fmt: skip
    """What an actor printed: its worker's .out or .err file (a worker runs one actor)."""
    cur = logs_cursor(request, namespace, cluster, session)
    return outputs.actor_output(cur, actor_id, stream)
