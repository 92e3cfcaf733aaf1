"""The timeline of a session or one job, as Chrome trace JSON (Perfetto, chrome://tracing).

Its spans are an on-demand snapshot table: the first timeline of a session derives them.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from .. import queries
from .common import SESSION_PATH, FastJSON, open_session

router = APIRouter(tags=["timeline"])


@router.get(SESSION_PATH + "/timeline")
def get_timeline(request: Request, namespace: str, cluster: str, session: str,
                 job_id: str | None = None) -> FastJSON:  # fmt: skip
    cur = open_session(request, namespace, cluster, session).cursor("task_profile_events")
    return FastJSON(queries.timeline(cur, job_id))
