"""Actors, nodes, workers and placement groups of a session."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from .. import queries
from .common import SESSION_PATH, Views, listing, open_session

views = Views("actors, nodes")


@views.get(SESSION_PATH + "/actors")
def list_actors(request: Request, namespace: str, cluster: str, session: str, state: str | None = None,
                class_name: str | None = None, job_id: str | None = None, node_id: str | None = None,
                sort: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:  # fmt: skip
    cur = open_session(request, namespace, cluster, session).cursor()
    filters = {"state": state, "class_name": class_name, "job_id": job_id, "node_id": node_id}
    return listing(*queries.page(cur, queries.ACTORS, queries.ListQuery(filters, sort, limit, offset)))


@views.get(SESSION_PATH + "/actors/{actor_id}")
def get_actor(request: Request, namespace: str, cluster: str, session: str, actor_id: str) -> dict[str, Any]:
    cur = open_session(request, namespace, cluster, session).cursor()
    actor = queries.one(cur, queries.ACTORS, actor_id=actor_id)
    _, calls = queries.page(cur, queries.TASKS, queries.ListQuery({"actor_id": actor_id}, None, queries.MAX_LIMIT))
    return {**actor, "method_calls": calls}


@views.get(SESSION_PATH + "/nodes")
def list_nodes(request: Request, namespace: str, cluster: str, session: str, state: str | None = None,
               sort: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:  # fmt: skip
    cur = open_session(request, namespace, cluster, session).cursor()
    return listing(*queries.page(cur, queries.NODES, queries.ListQuery({"state": state}, sort, limit, offset)))


@views.get(SESSION_PATH + "/workers")
def list_workers(request: Request, namespace: str, cluster: str, session: str, node_id: str | None = None,
                 job_id: str | None = None, sort: str | None = None, limit: int = 100,
                 offset: int = 0) -> dict[str, Any]:  # fmt: skip
    cur = open_session(request, namespace, cluster, session).cursor()
    filters = {"node_id": node_id, "job_id": job_id}
    return listing(*queries.page(cur, queries.WORKERS, queries.ListQuery(filters, sort, limit, offset)))


@views.get(SESSION_PATH + "/placement_groups")
def list_placement_groups(request: Request, namespace: str, cluster: str, session: str, state: str | None = None,
                          sort: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:  # fmt: skip
    cur = open_session(request, namespace, cluster, session).cursor()
    query = queries.ListQuery({"state": state}, sort, limit, offset)
    return listing(*queries.page(cur, queries.PLACEMENT_GROUPS, query))
