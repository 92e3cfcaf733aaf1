"""Sessions: the catalog's list (filters, sort, paging) and one session with its summary."""

from __future__ import annotations

from typing import Any

from fastapi import Query, Request

from .. import queries
from ..access import viewer_of
from ..catalog import SessionQuery
from ..errors import BadRequest
from ..retention import expiries
from .common import NO_ROWS, SESSION_PATH, Views, listing, now_ms, parse_age_ms, server_of

views = Views("sessions")


@views.get("/sessions", template="sessions.html", refused=NO_ROWS)
def list_sessions(
    request: Request, namespace: str | None = None, cluster: str | None = None,
    text: str | None = Query(None, description="a substring of namespace, cluster, session, owner or RayJob"),
    owner: str | None = Query(None, description="owner name, or Kind/name (RayJob/nightly)"),
    label: list[str] = Query([], description="key=value, repeat to require several"),
    status: str | None = Query(None, description="running, incomplete or closed"),
    queue: str | None = Query(None, description="Kueue queue"),
    started_after_ms: int | None = None, started_before_ms: int | None = None,
    since: str | None = Query(None, description="started within this long before now: 90m, 24h, 7d"),
    sort: str | None = Query(None, description="a column, '-' first to reverse: -start_time_ms"),
    limit: int = 100, offset: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Sessions of the archive, each with its jobs and failed jobs (as far as the job index has read them)."""
    if since is not None:
        started_after_ms = max(started_after_ms or 0, now_ms() - parse_age_ms(since))
    server = server_of(request)
    query = SessionQuery(
        namespace=namespace, cluster=cluster, owner=owner, labels=label, status=status, queue=queue, text=text,
        started_after_ms=started_after_ms, started_before_ms=started_before_ms, sort=sort, limit=limit,
        offset=offset, namespaces=server.namespaces_of(viewer_of(request)),
    )  # fmt: skip
    try:
        total, items = server.catalog.list_sessions(query)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    counts = server.jobs.counts([f"{row['namespace']}/{row['cluster']}/{row['session']}" for row in items])
    for row in items:
        row["jobs"], row["failed_jobs"] = counts.get(f"{row['namespace']}/{row['cluster']}/{row['session']}",
                                                     (None, None))  # fmt: skip
    return listing(total, items)


@views.get(SESSION_PATH, template="session.html")
def get_session(request: Request, namespace: str, cluster: str, session: str) -> dict[str, Any]:
    """The catalog's row and a summary: nodes, the cluster's resources (its nodes' sum), counts by state,
    the jobs, the functions that failed most, and what the source left incomplete; `retention`: each kind
    retention removed (its `expired` field, with a message)."""
    server = server_of(request)
    row = server.session_row(namespace, cluster, session, viewer_of(request))
    opened = server.open(namespace, cluster, session, viewer_of(request))
    cur = opened.cursor()
    _, nodes = queries.page(cur, queries.NODES, queries.ListQuery(limit=queries.MAX_LIMIT))
    _, jobs = queries.page(cur, queries.JOBS, queries.ListQuery(limit=queries.MAX_LIMIT, detail=False))
    summary = {
        "nodes": nodes,
        "resources_total": queries.cluster_resources(nodes),
        "tasks_by_state": queries.state_counts(cur, queries.TASKS),
        "actors_by_state": queries.state_counts(cur, queries.ACTORS),
        "jobs_by_status": queries.job_status_counts(cur),
        "jobs": [job for job in jobs if not job.get("is_hidden")],
        "most_failed": queries.failure_counts(cur),
        # Ray drops task events when its buffers overflow: the ends and definitions it never reported, and
        # its own count of the events it dropped (null when no metric sample of it was archived).
        "incomplete": {
            **queries.incomplete_counts(cur),
            "ray_task_events_dropped": opened.memoized(
                ("ray_task_events_dropped",), lambda: queries.dropped_task_events(opened.cursor("metrics"))
            ),
        },
    }
    return {**row, "summary": summary, "retention": [expiry.as_dict() for expiry in expiries(row).values()]}
