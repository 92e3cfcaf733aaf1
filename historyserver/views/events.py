"""Raw events of a session, by type and entity: what Ray sent, de-duplicated."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from .. import queries
from ..retention import note
from .common import SESSION_PATH, Views, listing, open_session

views = Views("events")


@views.get(SESSION_PATH + "/events")
def list_events(
    request: Request, namespace: str, cluster: str, session: str,
    event_type: str | None = None, task_id: str | None = None, actor_id: str | None = None,
    job_id: str | None = None, node_id: str | None = None, worker_id: str | None = None,
    placement_group_id: str | None = None, submission_id: str | None = None, limit: int = 100, offset: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Raw events (de-duplicated); `expired` says when and why retention removed them (null while they are
    there: the session's tables then come from its snapshot)."""
    opened = open_session(request, namespace, cluster, session)
    cur = opened.cursor("events")
    filters = {"event_type": event_type, "task_id": task_id, "actor_id": actor_id, "job_id": job_id,
               "node_id": node_id, "worker_id": worker_id, "placement_group_id": placement_group_id,
               "submission_id": submission_id}  # fmt: skip
    return {**listing(*queries.events_page(cur, filters, limit, offset)), "expired": note(opened.expired, "events")}
