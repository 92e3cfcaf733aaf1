"""Metrics of a session: the series it holds, and a range query with a step and an aggregation."""

from __future__ import annotations

from typing import Any

from fastapi import Query, Request

from .. import queries
from ..errors import BadRequest
from .common import SESSION_PATH, Views, listing, open_session

views = Views("metrics")


@views.get(SESSION_PATH + "/metrics")
def list_metrics(
    request: Request, namespace: str, cluster: str, session: str,
    prefix: str | None = Query(None, description="names starting with this: ray_node_"),
) -> dict[str, Any]:  # fmt: skip
    cur = open_session(request, namespace, cluster, session).cursor("metrics")
    items = queries.metric_names(cur, prefix)
    return listing(len(items), items)


@views.get(SESSION_PATH + "/metrics/query")
def query_metric(
    request: Request, namespace: str, cluster: str, session: str, name: str,
    start_ms: int | None = None, end_ms: int | None = None, step_s: float = 15.0,
    agg: str = Query("avg", description="sum, avg, max or min across series, per step"),
    by: str = Query("node", description="node: a series per node; cluster: one for the whole cluster"),
    label: list[str] = Query([], description="key=value, repeat to require several"),
) -> dict[str, Any]:  # fmt: skip
    if by not in ("node", "cluster"):
        raise BadRequest("by must be node or cluster")
    cur = open_session(request, namespace, cluster, session).cursor("metrics")
    series = queries.metric_range(cur, name, start_ms, end_ms, step_s, agg, by == "node", label)
    return {"name": name, "step_s": step_s, "agg": agg, "by": by, "series": series}
