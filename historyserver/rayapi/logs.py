"""Ray 2.60's log API (`state_head.list_logs` / `get_logs`) over a finished session's archived logs: what
`ray logs` and the dashboard's log viewers ask.

Logs of dead nodes. Ray answers logs only through a live node's agent, and its Logs page lists only the
nodes whose state is ALIVE. Every node of a finished session is DEAD and stays DEAD here (the Cluster page,
the state API and the node summary say so). Instead this API answers `api/v0/logs` and `api/v0/logs/file`
for every node the archive holds logs of, dead or not; the UI reaches them without any node pretending to
live: the node's own page (Cluster -> node id) links "log" to `#/logs/?nodeId=...` (the file list and
viewer), a job's page shows its driver log, and the actor and task pages fetch by actor or task id. Only
the Logs page's front list of nodes stays empty, as Ray's would with no node alive.
"""

from __future__ import annotations

from typing import Any

import duckdb
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from archive.logs import rebuild_file

from .. import outputs, queries
from ..downloads import attachment
from ..errors import NotFound
from ..sessions import OpenSession
from ..views.common import session_of_path
from . import logfiles, rows
from .envelope import BAD_REQUEST, NOT_FOUND, OK, rest_response
from .logfiles import UnsafePath

router = APIRouter()
NOT_IMPLEMENTED = 501
GONE = 410  # the session's logs expired under the retention policy: said so, not answered as empty
DOWNLOAD_FILENAME = "file.txt"  # ray.util.state.common.DEFAULT_DOWNLOAD_FILENAME
STREAM_GONE = ("The cluster of this session is gone: nothing writes to its logs any more, so there is nothing to "
               "follow. Read the archived file instead: api/v0/logs/file with the same parameters "
               "(`ray logs` without --follow).")  # fmt: skip


class LogRequestError(Exception):
    """A log request refused (400) or naming nothing archived (404): answered as plain text, as Ray answers
    its log errors."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _opened(request: Request) -> OpenSession:
    return session_of_path(request)


def expired_message(opened: OpenSession) -> str | None:
    """Why the session's logs are not there any more, once retention removed them."""
    expiry = opened.expired.get("logs")
    return expiry.message if expiry is not None else None


def _node_files(cur: duckdb.DuckDBPyConnection, node_id: str) -> dict[str, dict[str, Any]]:
    """The node's archived files by their name under logs/ (only Ray node ids: not our node names)."""
    return {file["filename"]: file for file in queries.log_files(cur, node_id) if file["node_id"] == node_id}


@router.get("/api/v0/logs", include_in_schema=False)
def list_logs(request: Request) -> Response:
    """The node's log folder as Ray's agent lists it, grouped as LogsManager groups it; files the collector
    kept as events rather than text (events/, export_events/) are listed too, as they were on the node."""
    opened = _opened(request)
    expired = expired_message(opened)
    if expired is not None:
        return rest_response(GONE, expired, google_style=False, result=None)
    cur = opened.cursor("logs")
    query = request.query_params
    pattern = query.get("glob", "*")
    node_id, node_ip = query.get("node_id"), query.get("node_ip")
    if not node_id and not node_ip:
        return rest_response(BAD_REQUEST, "Both node id and node ip are not provided. Please provide at least one "
                             "of them.", google_style=False, result=None)  # fmt: skip
    if not node_id:
        node_id = rows.node_id_by_ip(cur, node_ip or "")
        if node_id is None:
            return rest_response(NOT_FOUND, f"Cannot find matching node_id for a given node ip {node_ip}",
                                 google_style=False, result=None)  # fmt: skip
    try:
        found = logfiles.glob(_node_files(cur, node_id), pattern)
    except UnsafePath as exc:
        return rest_response(BAD_REQUEST, str(exc), google_style=False, result=None)
    return rest_response(OK, "", google_style=False, result=logfiles.categorize(found))


@router.get("/api/v0/logs/{media_type}", include_in_schema=False)
def get_log(request: Request, media_type: str) -> Response:
    """A log file's bytes (or a task's part of one), last `lines` lines, as Ray streams them: text/plain,
    an attachment named `download_filename`."""
    opened = _opened(request)
    expired = expired_message(opened)
    if expired is not None:
        return PlainTextResponse(expired, status_code=GONE)
    cur = opened.cursor("logs")
    query = request.query_params
    if media_type == "stream":
        return PlainTextResponse(STREAM_GONE, status_code=NOT_IMPLEMENTED)
    try:
        if media_type != "file":
            raise LogRequestError(BAD_REQUEST, f"Invalid media type: {media_type}")
        data = _resolve(cur, query)
        lines = _integer(query.get("lines"), "lines", logfiles.DEFAULT_LINES)
        data = logfiles.last_lines(data, lines or logfiles.DEFAULT_LINES)
    except LogRequestError as exc:
        return PlainTextResponse(str(exc), status_code=exc.status)
    if (query.get("filter_ansi_code") or "").lower() == "true":
        data = logfiles.without_ansi(data)
    disposition = attachment(query.get("download_filename", DOWNLOAD_FILENAME))
    return Response(data, media_type="text/plain", headers={"Content-Disposition": disposition})


def _integer(value: str | None, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise LogRequestError(BAD_REQUEST, f"{name} must be an integer, not {value!r}") from None


def _resolve(cur: duckdb.DuckDBPyConnection, query: Any) -> bytes:
    """`GetLogOptions`' checks, then `LogsManager.resolve_filename`'s order: actor, task, submission, pid,
    then the file name on the node."""
    node_id, node_ip = query.get("node_id"), query.get("node_ip")
    actor_id, task_id, pid = query.get("actor_id"), query.get("task_id"), query.get("pid")
    filename, submission_id = query.get("filename"), query.get("submission_id")
    suffix = query.get("suffix", "out")
    if not (node_id or node_ip) and not (actor_id or task_id):
        raise LogRequestError(BAD_REQUEST, "node_id or node_ip must be provided as constructor arguments when no "
                              "actor or task_id is supplied as arguments.")  # fmt: skip
    if node_id and node_ip:
        raise LogRequestError(BAD_REQUEST, "Both node_id and node_ip are given. Only one of them can be provided. "
                              f"Given node id: {node_id}, given node ip: {node_ip}")  # fmt: skip
    if not (actor_id or task_id or pid or filename or submission_id):
        raise LogRequestError(BAD_REQUEST, "None of actor_id, task_id, pid, submission_id or filename is provided. "
                              "At least one of them is required to fetch logs.")  # fmt: skip
    if suffix not in ("out", "err"):
        raise LogRequestError(BAD_REQUEST, f"Invalid suffix: {suffix}. Must be one of 'out' or 'err'.")
    stream = "stdout" if suffix == "out" else "stderr"
    if not node_id and node_ip:
        node_id = rows.node_id_by_ip(cur, node_ip)
    try:
        if actor_id:
            return outputs.actor_output(cur, actor_id, stream)["text"].encode()
        if task_id:
            attempt = _integer(query.get("attempt_number"), "attempt_number", 0)
            if _empty_range(cur, task_id, attempt, stream):
                return b""  # Ray streams nothing for a task that printed nothing, file or no file
            return outputs.task_output(cur, task_id, attempt, stream)["text"].encode()
    except NotFound as exc:
        raise LogRequestError(NOT_FOUND, str(exc)) from None
    if submission_id:
        file_id = rows.driver_log_file(cur, submission_id)
        if file_id is None:
            raise LogRequestError(NOT_FOUND, f"no driver log of submission {submission_id} in this session")
        return rebuild_file(queries.log_rows(cur, file_id))
    if node_id is None:
        raise LogRequestError(NOT_FOUND, f"Cannot find matching node_id for a given node ip {node_ip}")
    files = _node_files(cur, node_id)
    if pid:
        number = _integer(pid, "pid", 0)
        filename = logfiles.worker_file(files, number, suffix)
        if filename is None:
            raise LogRequestError(NOT_FOUND, f"no {suffix} file of process {number} on node {node_id} in this session")
    try:
        name = logfiles.checked_relative(filename or "", "filename")
    except UnsafePath as exc:
        raise LogRequestError(BAD_REQUEST, str(exc)) from None
    return _file_bytes(cur, files, node_id, name)


def _empty_range(cur: duckdb.DuckDBPyConnection, task_id: str, attempt_number: int, stream: str) -> bool:
    """Whether Ray's taskLogInfo marks an empty byte range of the attempt's file for this stream."""
    for attempt in queries.task_attempts(cur, task_id):
        if attempt["attempt_number"] == attempt_number:
            info = attempt.get("task_log_info") or {}
            start, end = info.get(f"{stream}_start"), info.get(f"{stream}_end")
            return start is not None and start == end
    return False


def _file_bytes(cur: duckdb.DuckDBPyConnection, files: dict[str, dict[str, Any]], node_id: str, name: str) -> bytes:
    file = files.get(name)
    if file is None:
        raise LogRequestError(NOT_FOUND, f"A file is not found at: {name} (node {node_id}) in this session's archive")
    if file["size_bytes"] is None and file["omitted_bytes"]:
        # The collector ships event files as event rows, not text: their lines are at /events and in the SQL.
        raise LogRequestError(NOT_FOUND, f"{name} was archived as events, not as text: see the session's events")
    return rebuild_file(queries.log_rows(cur, file["file_id"]))
