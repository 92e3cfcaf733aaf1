"""Tasks of a session: a page (filtered, sorted), one task with every attempt, a summary per function."""

from __future__ import annotations

from typing import Any

from fastapi import Query, Request

from .. import queries
from .common import SESSION_PATH, Views, listing, open_session

views = Views("tasks")


@views.get(SESSION_PATH + "/tasks")
def list_tasks(
    request: Request, namespace: str, cluster: str, session: str,
    job_id: str | None = None, state: str | None = None, func_or_class_name: str | None = None,
    name: str | None = None, node_id: str | None = None, actor_id: str | None = None,
    task_type: str | None = Query(None, alias="type",
                                  description="NORMAL_TASK, ACTOR_TASK, ACTOR_CREATION_TASK or DRIVER_TASK"),
    include_drivers: bool = Query(False, description="also the drivers' own tasks, which Ray's state API leaves out"),
    sort: str | None = Query(None, description="a time or duration column, '-' first to reverse: -duration_ms"),
    limit: int = 100, offset: int = 0,
    detail: bool = Query(False, description="every column (state times, log offsets, resources, runtime env...), "
                         "as Ray's state API with detail; else the columns a list shows"),
) -> dict[str, Any]:  # fmt: skip
    """A page of task attempts, and how many match."""
    opened = open_session(request, namespace, cluster, session)
    filters = {"job_id": job_id, "state": state, "func_or_class_name": func_or_class_name, "name": name,
               "node_id": node_id, "actor_id": actor_id, "type": task_type}  # fmt: skip
    include_hidden = include_drivers or task_type == "DRIVER_TASK"
    query = queries.ListQuery(filters, sort, limit, offset, detail, include_hidden)
    return listing(*queries.page(opened.cursor(), queries.TASKS, query, opened.task_order))


@views.get(SESSION_PATH + "/tasks/summary")
def summarize_tasks(request: Request, namespace: str, cluster: str, session: str,
                    job_id: str | None = None) -> dict[str, Any]:  # fmt: skip
    opened = open_session(request, namespace, cluster, session)
    key = ("tasks/summary", job_id or "")
    if key not in opened.memo:
        opened.memo[key] = queries.task_summary(opened.cursor(), job_id)
    items = opened.memo[key]
    return listing(len(items), items)


@views.get(SESSION_PATH + "/tasks/{task_id}")
def get_task(request: Request, namespace: str, cluster: str, session: str, task_id: str) -> dict[str, Any]:
    cur = open_session(request, namespace, cluster, session).cursor()
    attempts = queries.task_attempts(cur, task_id)
    return {**attempts[-1], "attempts": attempts}
