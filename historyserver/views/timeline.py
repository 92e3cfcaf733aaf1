"""The timeline of a session or one job, as Chrome trace JSON (Perfetto, chrome://tracing).

Its spans are an on-demand snapshot table: the first timeline of a session derives them.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from .. import queries
from .common import SESSION_PATH, Views, open_session

views = Views("timeline")


@views.get(SESSION_PATH + "/timeline")
def get_timeline(request: Request, namespace: str, cluster: str, session: str,
                 job_id: str | None = None) -> dict[str, Any]:  # fmt: skip
    cur = open_session(request, namespace, cluster, session).cursor("task_profile_events")
    return queries.timeline(cur, job_id)
