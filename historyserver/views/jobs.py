"""Jobs: across every session of the archive (the job index), and one session's."""

from __future__ import annotations

from typing import Any

from fastapi import Query, Request

from .. import queries
from ..errors import NotFound
from ..jobindex import JobQuery
from .common import SESSION_PATH, Views, listing, open_session, server_of

views = Views("jobs")


@views.get("/jobs")
def list_all_jobs(
    request: Request, namespace: str | None = None, cluster: str | None = None,
    status: str | None = Query(None, description="PENDING, RUNNING, STOPPED, SUCCEEDED or FAILED"),
    submission_id: str | None = None, job_id: str | None = None,
    entrypoint: str | None = Query(None, description="text the entrypoint contains, any case"),
    metadata: list[str] = Query([], description="key=value of the submission's metadata, repeat for several"),
    started_after_ms: int | None = None, started_before_ms: int | None = None,
    include_hidden: bool = Query(False, description="also Ray's internal drivers, which /api/jobs/ hides"),
    sort: str | None = Query(None, description="a column, '-' first to reverse: -start_time_ms"),
    limit: int = 100, offset: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Jobs of every session, with the session they ran in. Sessions are indexed when opened, and ended
    ones in the background: `sessions_pending` says how many are still to come."""
    server = server_of(request)
    query = JobQuery(
        namespace=namespace, cluster=cluster, status=status, submission_id=submission_id, job_id=job_id,
        entrypoint=entrypoint, metadata=metadata, started_after_ms=started_after_ms,
        started_before_ms=started_before_ms, include_hidden=include_hidden, sort=sort, limit=limit, offset=offset,
    )  # fmt: skip
    total, items = server.jobs.list_jobs(query)
    return ({"total": total, "items": items, "sessions_indexed": server.jobs.sessions_indexed(),
                     "sessions_pending": server.sessions_to_index})  # fmt: skip


@views.get(SESSION_PATH + "/jobs")
def list_jobs(request: Request, namespace: str, cluster: str, session: str, status: str | None = None,
              submission_id: str | None = None, sort: str | None = None, limit: int = 100,
              offset: int = 0) -> dict[str, Any]:  # fmt: skip
    cur = open_session(request, namespace, cluster, session).cursor()
    filters = {"status": status, "submission_id": submission_id}
    return listing(*queries.page(cur, queries.JOBS, queries.ListQuery(filters, sort, limit, offset)))


@views.get(SESSION_PATH + "/jobs/{job_id}")
def get_job(request: Request, namespace: str, cluster: str, session: str, job_id: str) -> dict[str, Any]:
    """A job by its job id, or a submission (which may never have had a driver) by its submission id."""
    cur = open_session(request, namespace, cluster, session).cursor()
    try:
        return queries.one(cur, queries.JOBS, job_id=job_id)
    except NotFound:
        return queries.one(cur, queries.JOBS, submission_id=job_id)
