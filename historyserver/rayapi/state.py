"""Ray 2.60's state API (`/api/v0/{tasks,actors,jobs,nodes,workers,placement_groups}` and the task and actor
summaries) over a finished session's snapshot, answered as `ray.dashboard.modules.state.state_head` answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..sessions import OpenSession
from ..views.common import server_of, session_of_path
from . import rows
from .envelope import RayJSON, StateApiError, list_reply, state_error
from .filters import Options, options, where
from .lineage import by_lineage
from .resources import ACTORS, RESOURCES, TASKS, Resource

router = APIRouter()


def _session(request: Request) -> OpenSession:
    return session_of_path(request)


def _options(request: Request) -> Options:
    query = request.query_params
    multi = {name: query.getlist(name) for name in ("filter_keys", "filter_predicates", "filter_values")}
    return options(query, multi)


def listing(opened: OpenSession, resource: Resource, opts: Options, limit: int | None) -> dict[str, Any]:
    """ListApiResponse's numbers and rows. `total` counts what Ray's data source would have given (for tasks,
    after the filters the GCS applies itself; drivers out unless asked for), `num_after_truncation` the
    same (nothing is truncated at a source here), `num_filtered` what every filter leaves."""
    cur = opened.cursor()
    found = where(resource, opts)
    if resource is TASKS:  # a million rows: Ray's base columns are ours as they are
        filtered, selected = rows.tasks_page(cur, opened.task_order, found.all, found.params, limit, opts.detail)
        converted = [rows.task(row) for row in selected] if opts.detail else selected
    else:
        filtered = rows.count(cur, resource, found.all, found.params)
        converted = [rows.CONVERT[resource.name](row) for row in rows.select(cur, resource, found.all,
                                                                             found.params, limit)]  # fmt: skip
    total = filtered if found.all == found.source else rows.count(cur, resource, found.source, found.source_params)
    if resource is TASKS and opts.detail:
        spans = rows.profiling(opened.cursor("task_profile_events"),
                               [(row["task_id"], row["attempt_number"]) for row in converted])  # fmt: skip
        for row in converted:
            row["profiling_data"] = spans.get((row["task_id"], row["attempt_number"]), {})
    columns = resource.detail if opts.detail else resource.base
    if resource is TASKS and not opts.detail:  # read as exactly these columns
        result = converted
    else:
        result = [{column: row.get(column) for column in columns} for row in converted]  # Ray's filter_fields
    return {"total": total, "num_after_truncation": total, "num_filtered": filtered, "result": result}


def _refusing(answer: Callable[[], Response]) -> Response:
    """Ray answers a refused request (`ValueError`) as a 400 in its envelope; so do we."""
    try:
        return answer()
    except StateApiError as exc:
        return state_error(str(exc))


def _list_route(resource: Resource) -> None:
    def list_resource(request: Request) -> Response:
        opened = _session(request)  # an unknown session is a 404 before anything else

        def answer() -> Response:
            opts = _options(request)  # a bad value is refused before anything is looked up
            return _kept(request, opened, resource.name, lambda: list_reply(**listing(opened, resource, opts,
                                                                                       opts.limit)))  # fmt: skip

        return _refusing(answer)

    list_resource.__name__ = f"ray_list_{resource.name}"
    router.add_api_route(f"/api/v0/{resource.name}", list_resource, methods=["GET"], include_in_schema=False)


# Summaries before the lists' routes would not matter (different paths), but declared first for reading order.
@router.get("/api/v0/tasks/summarize", include_in_schema=False)
def summarize_tasks(request: Request) -> Response:
    opened = _session(request)

    def answer() -> Response:
        summary_by = request.query_params.get("summary_by") or "func_name"
        if summary_by not in ("func_name", "task_name", "lineage"):
            raise StateApiError('summary_by must be one of "func_name", "task_name", or "lineage".')
        opts = _options(request)
        # Ray summarizes its list of at most RAY_MAX_LIMIT_FROM_API_SERVER tasks; a finished session is whole.
        # The lineage needs each task's parent and creation time, and the actors' names: the detailed rows.
        if summary_by == "lineage":
            found = listing(opened, TASKS, Options(detail=True, filters=opts.filters), None)
            summary = by_lineage(found["result"], listing(opened, ACTORS, Options(detail=True), None)["result"])
            counts = found["total"], found["num_after_truncation"], found["num_filtered"]
        else:
            counts, summary = _func_name_summary(opened, opts)
        return list_reply(*counts, {"node_id_to_summary": {"cluster": summary}})

    # Ray's dashboard and `ray summary tasks` ask the same summary again and again.
    return _refusing(lambda: _kept(request, opened, "tasks/summarize", answer))


def _kept(request: Request, opened: OpenSession, name: str, compute: Callable[[], Response]) -> Response:
    """The answer to this request, computed once and then kept (historyserver.answers)."""
    key = opened.answer_key(name, request.query_params.multi_items())
    body = server_of(request).answers.get(key, lambda: bytes(compute().body))
    return Response(body, media_type=RayJSON.media_type)


def _func_name_summary(opened: OpenSession, opts: Options) -> tuple[tuple[int, int, int], dict[str, Any]]:
    cur = opened.cursor()
    clauses = where(TASKS, Options(filters=opts.filters))
    total = rows.count(cur, TASKS, clauses.source, clauses.source_params)
    filtered = total if clauses.all == clauses.source else rows.count(cur, TASKS, clauses.all, clauses.params)
    return (total, total, filtered), by_func_name(rows.task_counts(cur, clauses.all, clauses.params))


def by_func_name(counts: list[tuple[str, str, str, str, int]]) -> dict[str, Any]:
    """TaskSummaries.to_summary_by_func_name from rows.task_counts."""
    summary: dict[str, dict[str, Any]] = {}
    totals = {"NORMAL_TASK": 0, "ACTOR_TASK": 0, "ACTOR_CREATION_TASK": 0}
    for key, first_type, own_type, state, count in counts:
        entry = summary.setdefault(key, {"func_or_class_name": key, "type": first_type, "state_counts": {}})
        entry["state_counts"][state] = entry["state_counts"].get(state, 0) + count
        if own_type in totals:
            totals[own_type] += count
    return {"summary": summary, "total_tasks": totals["NORMAL_TASK"], "total_actor_tasks": totals["ACTOR_TASK"],
            "total_actor_scheduled": totals["ACTOR_CREATION_TASK"], "summary_by": "func_name"}  # fmt: skip


@router.get("/api/v0/actors/summarize", include_in_schema=False)
def summarize_actors(request: Request) -> Response:
    opened = _session(request)

    def answer() -> Response:
        opts = _options(request)
        found = listing(opened, ACTORS, Options(detail=False, filters=opts.filters), None)
        summary: dict[str, dict[str, Any]] = {}
        for actor in found["result"]:
            entry = summary.setdefault(actor["class_name"], {"class_name": actor["class_name"], "state_counts": {}})
            entry["state_counts"][actor["state"]] = entry["state_counts"].get(actor["state"], 0) + 1
        cluster = {"summary": summary, "total_actors": len(found["result"]), "summary_by": "class"}
        return list_reply(found["total"], found["num_after_truncation"], found["num_filtered"],
                          {"node_id_to_summary": {"cluster": cluster}})  # fmt: skip

    return _refusing(answer)


for _resource in RESOURCES.values():
    _list_route(_resource)
