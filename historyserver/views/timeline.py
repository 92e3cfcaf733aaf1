"""The timeline of a session or one job: a Gantt of task attempts per worker (the page), and the Chrome
trace JSON of its profile spans (Perfetto, chrome://tracing; the JSON twin and the download).

The page and its JSON twin share a URL but not a size. The trace has a span per profile event: for a
million-task session, hundreds of megabytes that no page should embed, nor build to ignore. So the
view answers the trace under /api/v1 (as it always has) and, for the page, the light summary of
`/timeline/summary` (extent, rows, legend, jobs); the page's script then fetches the bars of what it
shows from `/timeline/bars`, which answers at most `max_bars` bars or one cell per row and pixel.
The trace's spans are an on-demand snapshot table: the first trace of a session derives them; the
page never asks for it unless someone downloads it.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import Query, Request
from fastapi.responses import Response

from .. import gantt, queries
from ..sessions import OpenSession
from .common import SESSION_PATH, Views, open_session
from .pages import API

views = Views("timeline")


def _gantt_cursor(opened: OpenSession) -> Any:
    cur = opened.cursor()
    gantt.ensure_table(cur, opened.memo)
    return cur


def _summary(opened: OpenSession, job_id: str | None) -> dict[str, Any]:
    """Computed once per job: an opened session's tables do not change (a running one is reopened)."""
    return opened.memoized(("gantt/summary", job_id or ""), lambda: gantt.summary(_gantt_cursor(opened), job_id))


@views.get(SESSION_PATH + "/timeline", template="timeline.html")
def get_timeline(
    request: Request, namespace: str, cluster: str, session: str,
    job_id: str | None = None,
    download: bool = Query(False, description="answer the trace as a file to save (and open in Perfetto)"),
) -> Any:  # fmt: skip
    opened = open_session(request, namespace, cluster, session)
    if not request.url.path.startswith(API + "/"):
        return _summary(opened, job_id)  # the page: see the module's docstring
    trace = queries.timeline(opened.cursor("task_profile_events"), job_id)
    if download:
        name = f"{session}{'-job-' + job_id if job_id else ''}-trace.json"
        return Response(msgspec.json.encode(trace), media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip
    return trace


@views.get(SESSION_PATH + "/timeline/summary")
def get_timeline_summary(request: Request, namespace: str, cluster: str, session: str,
                         job_id: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The Gantt's extent, rows (a worker each, by node), states, functions and jobs."""
    return _summary(open_session(request, namespace, cluster, session), job_id)


@views.get(SESSION_PATH + "/timeline/bars")
def get_timeline_bars(
    request: Request, namespace: str, cluster: str, session: str,
    start_ms: int | None = Query(None, description="the window's start; the first attempt's if absent"),
    end_ms: int | None = Query(None, description="the window's end; the last attempt's if absent"),
    width_px: int = Query(1200, description="the plot's width: cells are a pixel wide"),
    color_by: str = Query("state", description="state or function: what `key` in bars and cells is"),
    job_id: str | None = None,
    row_start: int = Query(0, ge=0, description="the first row shown (a position in the summary's rows)"),
    row_count: int = Query(gantt.MAX_ROWS, ge=1, le=gantt.MAX_ROWS, description="rows shown"),
    max_bars: int = Query(gantt.MAX_BARS, description="more attempts than this in the window: cells instead"),
) -> dict[str, Any]:  # fmt: skip
    """Attempts in a window: `bars` of [row, start_ms, end_ms, key, task_id, attempt_number, state_key,
    func_key] when at most `max_bars`, else `cells` of [row, px, end_px, attempts, key, failed]: the
    attempts starting in pixel `px` (or running when the window starts, in pixel 0), the furthest pixel
    one reaches, their commonest key and how many failed. `row` is the first item of a row of the
    summary's `rows`, `key` a `key` of its `states` or `functions`."""
    opened = open_session(request, namespace, cluster, session)
    summary = _summary(opened, job_id)
    rows = [row[0] for row in summary["rows"][row_start : row_start + row_count]]
    if start_ms is None or end_ms is None:
        first, last = summary["start_ms"] or 0, summary["end_ms"] or 0
        start_ms = first if start_ms is None else start_ms
        end_ms = max(last, start_ms) + 1 if end_ms is None else end_ms  # + 1: the last instant is in
    return gantt.bars(_gantt_cursor(opened), rows, start_ms=start_ms, end_ms=end_ms, width_px=width_px,
                      color_by=color_by, job_id=job_id, max_bars=max_bars)  # fmt: skip
