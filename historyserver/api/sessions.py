"""Sessions: the catalog's list (filters, sort, paging) and one session with its summary."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from .. import queries
from ..catalog import SessionQuery
from ..errors import BadRequest
from .common import SESSION_PATH, FastJSON, listing, server_of

router = APIRouter(tags=["sessions"])


@router.get("/sessions")
def list_sessions(
    request: Request, namespace: str | None = None, cluster: str | None = None,
    owner: str | None = Query(None, description="owner name, or Kind/name (RayJob/nightly)"),
    label: list[str] = Query([], description="key=value, repeat to require several"),
    status: str | None = Query(None, description="running, incomplete or closed"),
    queue: str | None = Query(None, description="Kueue queue"),
    started_after_ms: int | None = None, started_before_ms: int | None = None,
    sort: str | None = Query(None, description="a column, '-' first to reverse: -start_time_ms"),
    limit: int = 100, offset: int = 0,
) -> FastJSON:  # fmt: skip
    query = SessionQuery(
        namespace=namespace, cluster=cluster, owner=owner, labels=label, status=status, queue=queue,
        started_after_ms=started_after_ms, started_before_ms=started_before_ms, sort=sort, limit=limit,
        offset=offset,
    )  # fmt: skip
    try:
        return listing(*server_of(request).catalog.list_sessions(query))
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


@router.get(SESSION_PATH)
def get_session(request: Request, namespace: str, cluster: str, session: str) -> FastJSON:
    """The catalog's row and a summary: nodes, the cluster's resources (its nodes' sum), counts by state."""
    server = server_of(request)
    row = server.session_row(namespace, cluster, session)
    cur = server.open(namespace, cluster, session).cursor()
    _, nodes = queries.page(cur, queries.NODES, queries.ListQuery(limit=queries.MAX_LIMIT))
    summary = {
        "nodes": nodes,
        "resources_total": queries.cluster_resources(nodes),
        "tasks_by_state": queries.state_counts(cur, queries.TASKS),
        "actors_by_state": queries.state_counts(cur, queries.ACTORS),
        "jobs_by_status": {status: count for status, count in cur.execute(
            "SELECT status, count(*) FROM jobs WHERE NOT coalesce(is_hidden, false) GROUP BY status").fetchall()},
    }  # fmt: skip
    return FastJSON({**row, "summary": summary})
