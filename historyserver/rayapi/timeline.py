"""Ray 2.60's task timeline (`state_head.tasks_timeline`): Chrome trace events of the session's profile spans,
for one job or all, optionally as a download."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .. import queries
from ..downloads import attachment
from ..views.common import session_of_path
from .envelope import RayJSON

router = APIRouter()


@router.get("/api/v0/tasks/timeline", include_in_schema=False)
def tasks_timeline(request: Request, job_id: str | None = None, download: str | None = None) -> Response:
    opened = session_of_path(request)
    trace = queries.timeline(opened.cursor("task_profile_events"), job_id or None)
    headers = None
    if download == "1":
        # Ray names the file by the job and the time of the request.
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        headers = {"Content-Disposition": attachment(f"timeline-{job_id}-{stamp}.json")}
    return RayJSON(trace, headers=headers)
