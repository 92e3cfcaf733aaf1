"""Logs of a session: the files per node, a file's exact bytes, a range or tail of lines, a regex
search, and all of a job's files as a zip."""

from __future__ import annotations

import io
import zipfile

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from archive.logs import rebuild_file

from .. import queries
from ..errors import NotFound
from .common import SESSION_PATH, FastJSON, listing, open_session

router = APIRouter(tags=["logs"])

MAX_LINES = 10_000
MAX_PATTERN = 1000


@router.get(SESSION_PATH + "/logs")
def list_log_files(request: Request, namespace: str, cluster: str, session: str,
                   node_id: str | None = None) -> FastJSON:  # fmt: skip
    cur = open_session(request, namespace, cluster, session).cursor("logs")
    files = queries.log_files(cur, node_id)
    return listing(len(files), files)


@router.get(SESSION_PATH + "/logs/file")
def download_log_file(request: Request, namespace: str, cluster: str, session: str, node_id: str,
                      filename: str) -> Response:  # fmt: skip
    """The file's exact bytes, as Ray's /api/v0/logs/file gives them."""
    cur = open_session(request, namespace, cluster, session).cursor("logs")
    found = queries.log_file(cur, node_id, filename)
    data = rebuild_file(queries.log_rows(cur, found["file_id"]))
    name = filename.rsplit("/", 1)[-1]
    return Response(data, media_type="text/plain", headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get(SESSION_PATH + "/logs/lines")
def read_log_lines(
    request: Request, namespace: str, cluster: str, session: str, node_id: str, filename: str,
    start_line: int = Query(1, ge=1), lines: int = Query(1000, ge=1, le=MAX_LINES),
    tail: int | None = Query(None, ge=1, le=MAX_LINES, description="the last N lines instead"),
) -> FastJSON:  # fmt: skip
    cur = open_session(request, namespace, cluster, session).cursor("logs")
    found = queries.log_file(cur, node_id, filename)
    if tail is not None:
        last = queries.last_line_number(cur, found["file_id"])
        start_line, lines = max(1, last - tail + 1), tail
    items = queries.log_lines(cur, found["file_id"], start_line, lines)
    return FastJSON({**found, "total": len(items), "items": items})


@router.get(SESSION_PATH + "/logs/search")
def search_logs(
    request: Request, namespace: str, cluster: str, session: str,
    pattern: str = Query(..., min_length=1, max_length=MAX_PATTERN, description="a regular expression (RE2)"),
    node_id: str | None = None, filename: str | None = None, limit: int = Query(100, ge=1, le=MAX_LINES),
) -> FastJSON:  # fmt: skip
    cur = open_session(request, namespace, cluster, session).cursor("logs")
    items = queries.search_logs(cur, pattern, node_id, filename, limit)
    return listing(len(items), items)


@router.get(SESSION_PATH + "/logs/job/{job_id}.zip")
def download_job_logs(request: Request, namespace: str, cluster: str, session: str, job_id: str) -> Response:
    """Every file of a job's workers and driver (by job id or submission id), in a zip."""
    cur = open_session(request, namespace, cluster, session).cursor("logs")
    files = queries.job_log_files(cur, job_id)
    if not files:
        raise NotFound(f"no log file names job {job_id} in this session")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            archive.writestr(f"{file['node']}/{file['filename']}", rebuild_file(queries.log_rows(cur, file["file_id"])))
    return Response(buffer.getvalue(), media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{session}-{job_id}-logs.zip"'})  # fmt: skip


@router.get(SESSION_PATH + "/tasks/{task_id}/logs")
def task_logs(
    request: Request, namespace: str, cluster: str, session: str, task_id: str, attempt_number: int | None = None,
    stream: str = Query("stdout", pattern="^(stdout|stderr)$"),
) -> FastJSON:  # fmt: skip
    """What one attempt printed: the byte range of its worker's file that Ray's taskLogInfo marks."""
    cur = open_session(request, namespace, cluster, session).cursor("logs")
    attempts = queries.task_attempts(cur, task_id)
    attempt = attempts[-1] if attempt_number is None else next(
        (entry for entry in attempts if entry["attempt_number"] == attempt_number), None)  # fmt: skip
    if attempt is None:
        raise NotFound(f"task {task_id} has no attempt {attempt_number}")
    info = attempt.get("task_log_info") or {}
    path, start, end = info.get(f"{stream}_file"), info.get(f"{stream}_start"), info.get(f"{stream}_end")
    answer = {"task_id": task_id, "attempt_number": attempt["attempt_number"], "node_id": attempt["node_id"]}
    if path and start is not None and end is not None:
        filename = path.split("/logs/", 1)[-1]
        text = rebuild_file(queries.log_slice(cur, attempt["node_id"], filename, start, end)).decode("utf-8", "replace")
        return FastJSON({**answer, "source": "task_log_info", "filename": filename, "start": start, "end": end,
                         "text": text})  # fmt: skip
    # Ray did not say where this attempt's output is: the lines its worker printed under the task's
    # `:task_name:` marker (every attempt of the task that ran on that worker).
    lines = queries.marked_lines(cur, attempt["worker_id"] or "", attempt["name"] or "", stream)
    if not lines:
        raise NotFound(f"no {stream} of attempt {attempt['attempt_number']} of task {task_id} in this session")
    return FastJSON({**answer, "source": "markers", "filename": lines[0]["filename"],
                     "text": "".join(line["text"] + "\n" for line in lines)})  # fmt: skip


@router.get(SESSION_PATH + "/actors/{actor_id}/logs")
def actor_logs(request: Request, namespace: str, cluster: str, session: str, actor_id: str,
               stream: str = Query("stdout", pattern="^(stdout|stderr)$")) -> FastJSON:  # fmt: skip
    """What an actor printed: its worker's .out or .err file (a worker runs one actor)."""
    cur = open_session(request, namespace, cluster, session).cursor("logs")
    actor = queries.one(cur, queries.ACTORS, actor_id=actor_id)
    suffix = ".out" if stream == "stdout" else ".err"
    files = [
        file for file in queries.worker_log_files(cur, actor["worker_id"] or "") if file["filename"].endswith(suffix)
    ]
    if not files:
        raise NotFound(f"no {stream} file of actor {actor_id}'s worker in this session")
    text = rebuild_file(queries.log_rows(cur, files[0]["file_id"]))
    return FastJSON({"actor_id": actor_id, "filename": files[0]["filename"], "node_id": files[0]["node_id"],
                     "text": text.decode("utf-8", "replace")})  # fmt: skip
