"""Tasks of a session: a page (filtered, sorted), one task with every attempt, a summary per function."""

from __future__ import annotations

from typing import Any

from fastapi import Query, Request

from .. import outputs, queries
from ..errors import NotFound
from ..retention import note
from .common import NO_ROWS, SESSION_PATH, Kept, Views, kept, listing, open_session

views = Views("tasks")


@views.get(SESSION_PATH + "/tasks", template="tasks.html", refused=NO_ROWS)
def list_tasks(
    request: Request, namespace: str, cluster: str, session: str,
    job_id: str | None = None, state: str | None = None, func_or_class_name: str | None = None,
    name: str | None = None, node_id: str | None = None, actor_id: str | None = None,
    error_type: str | None = None,
    task_type: str | None = Query(None, alias="type",
                                  description="NORMAL_TASK, ACTOR_TASK, ACTOR_CREATION_TASK or DRIVER_TASK"),
    include_drivers: bool = Query(False, description="also the drivers' own tasks, which Ray's state API leaves out"),
    sort: str | None = Query(None, description="a time or duration column, '-' first to reverse: -duration_ms"),
    limit: int = 100, offset: int = 0,
    detail: bool = Query(False, description="every column (state times, log offsets, resources, runtime env...), "
                         "as Ray's state API with detail; else the columns a list shows"),
) -> Kept:  # fmt: skip
    """A page of task attempts, and how many match."""
    opened = open_session(request, namespace, cluster, session)
    filters = {"job_id": job_id, "state": state, "func_or_class_name": func_or_class_name, "name": name,
               "node_id": node_id, "actor_id": actor_id, "type": task_type, "error_type": error_type}  # fmt: skip
    include_hidden = include_drivers or task_type == "DRIVER_TASK"
    query = queries.ListQuery(filters, sort, limit, offset, detail, include_hidden)
    return kept(request, opened, lambda: listing(*queries.page(opened.cursor(), queries.TASKS, query,
                                                               opened.task_order)))  # fmt: skip


@views.get(SESSION_PATH + "/tasks/summary")
def summarize_tasks(request: Request, namespace: str, cluster: str, session: str,
                    job_id: str | None = None) -> dict[str, Any]:  # fmt: skip
    opened = open_session(request, namespace, cluster, session)
    items = opened.memoized(("tasks/summary", job_id or ""), lambda: queries.task_summary(opened.cursor(), job_id))
    return listing(len(items), items)


@views.get(SESSION_PATH + "/tasks/{task_id}", template="task.html")
def get_task(
    request: Request, namespace: str, cluster: str, session: str, task_id: str,
    attempt: int | None = Query(None, description="the attempt shown (its number); the last one if absent"),
) -> dict[str, Any]:  # fmt: skip
    """Every attempt of a task, the chosen one's fields at the top, the tasks it submitted, and what the
    chosen attempt printed (its slice of the worker's stdout and stderr, when the archive has them)."""
    opened = open_session(request, namespace, cluster, session)
    cur = opened.cursor()
    attempts = queries.task_attempts(cur, task_id)
    chosen = attempts[-1] if attempt is None else next((a for a in attempts if a["attempt_number"] == attempt), None)
    if chosen is None:
        raise NotFound(f"task {task_id} has no attempt {attempt}")
    children_total, children = queries.child_tasks(cur, task_id)
    printed = {}
    for stream in outputs.STREAMS:
        try:
            printed[stream] = outputs.task_output(opened.cursor("logs"), task_id, chosen["attempt_number"], stream)
        except NotFound:
            printed[stream] = None
    return {**chosen, "attempts": attempts, "children": listing(children_total, children), "output": printed,
            "output_expired": note(opened.expired, "logs")}  # fmt: skip
