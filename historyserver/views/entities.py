"""Actors, nodes, workers and placement groups of a session."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from .. import outputs, queries
from ..errors import NotFound
from ..retention import note
from .common import NO_ROWS, SESSION_PATH, Views, listing, open_session

views = Views("actors, nodes")


@views.get(SESSION_PATH + "/actors", template="actors.html", refused=NO_ROWS)
def list_actors(request: Request, namespace: str, cluster: str, session: str, state: str | None = None,
                class_name: str | None = None, job_id: str | None = None, node_id: str | None = None,
                sort: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:  # fmt: skip
    cur = open_session(request, namespace, cluster, session).cursor()
    filters = {"state": state, "class_name": class_name, "job_id": job_id, "node_id": node_id}
    return listing(*queries.page(cur, queries.ACTORS, queries.ListQuery(filters, sort, limit, offset)))


@views.get(SESSION_PATH + "/actors/{actor_id}", template="actor.html")
def get_actor(request: Request, namespace: str, cluster: str, session: str, actor_id: str) -> dict[str, Any]:
    """An actor with its method calls and what its worker printed."""
    opened = open_session(request, namespace, cluster, session)
    cur = opened.cursor()
    actor = queries.one(cur, queries.ACTORS, actor_id=actor_id)
    query = queries.ListQuery({"actor_id": actor_id}, None, queries.MAX_LIMIT, detail=False)
    _, calls = queries.page(cur, queries.TASKS, query)
    printed = {}
    for stream in outputs.STREAMS:
        try:
            printed[stream] = outputs.actor_output(opened.cursor("logs"), actor_id, stream)
        except NotFound:
            printed[stream] = None
    return {**actor, "method_calls": calls, "output": printed, "output_expired": note(opened.expired, "logs")}


@views.get(SESSION_PATH + "/nodes", template="nodes.html", refused=NO_ROWS)
def list_nodes(request: Request, namespace: str, cluster: str, session: str, state: str | None = None,
               sort: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:  # fmt: skip
    cur = open_session(request, namespace, cluster, session).cursor()
    return listing(*queries.page(cur, queries.NODES, queries.ListQuery({"state": state}, sort, limit, offset)))


@views.get(SESSION_PATH + "/workers", template="workers.html", refused=NO_ROWS)
def list_workers(request: Request, namespace: str, cluster: str, session: str, node_id: str | None = None,
                 job_id: str | None = None, sort: str | None = None, limit: int = 100,
                 offset: int = 0) -> dict[str, Any]:  # fmt: skip
    cur = open_session(request, namespace, cluster, session).cursor()
    filters = {"node_id": node_id, "job_id": job_id}
    return listing(*queries.page(cur, queries.WORKERS, queries.ListQuery(filters, sort, limit, offset)))


@views.get(SESSION_PATH + "/placement_groups", template="placement_groups.html", refused=NO_ROWS)
def list_placement_groups(request: Request, namespace: str, cluster: str, session: str, state: str | None = None,
                          sort: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:  # fmt: skip
    cur = open_session(request, namespace, cluster, session).cursor()
    query = queries.ListQuery({"state": state}, sort, limit, offset)
    return listing(*queries.page(cur, queries.PLACEMENT_GROUPS, query))
