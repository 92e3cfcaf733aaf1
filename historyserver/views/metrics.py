"""Metrics of a session: the series it holds, and a range query with a step and an aggregation.

Both are pages too (one template, `metrics.html`): the list with a filter and quick links, and a
metric's chart, drawn in the browser from the range query's answer the page embeds.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import Query, Request

from .. import queries
from ..errors import BadRequest
from ..retention import note
from .common import SESSION_PATH, Views, listing, open_session

views = Views("metrics")

DEFAULT_STEP_S = 15.0
# A chart has a point per step and a screen has a thousand pixels or two: a long session's default step
# grows to keep under this many points (and under the query's own limit), a short one keeps 15 s.
TARGET_POINTS = 1_000
NICE_STEPS_S = (15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400)


@views.get(SESSION_PATH + "/metrics", template="metrics.html")
def list_metrics(
    request: Request, namespace: str, cluster: str, session: str,
    prefix: str | None = Query(None, description="names starting with this: ray_node_"),
) -> dict[str, Any]:  # fmt: skip
    """The metrics the session holds; `expired` says when and why retention removed them (null while they
    are there)."""
    opened = open_session(request, namespace, cluster, session)
    items = queries.metric_names(opened.cursor("metrics"), prefix)
    return {**listing(len(items), items), "expired": note(opened.expired, "metrics")}


def default_step_s(first_ms: int, last_ms: int) -> float:
    """15 s, or the smallest round step that keeps [first_ms, last_ms] under TARGET_POINTS points."""
    span_s = max(0, last_ms - first_ms) / 1000
    for step in NICE_STEPS_S:
        if span_s / step <= TARGET_POINTS:
            return float(step)
    return float(math.ceil(span_s / TARGET_POINTS))


@views.get(SESSION_PATH + "/metrics/query", template="metrics.html")
def query_metric(
    request: Request, namespace: str, cluster: str, session: str, name: str,
    start_ms: int | None = None, end_ms: int | None = None,
    step_s: float | None = Query(None, description="seconds per point; 15 unless the range needs more than 1000"),
    agg: str = Query("avg", description="sum, avg, max or min across series, per step"),
    by: str = Query("node", description="node: a series per node; cluster: one for the whole cluster"),
    label: list[str] = Query([], description="key=value, repeat to require several"),
) -> dict[str, Any]:  # fmt: skip
    if by not in ("node", "cluster"):
        raise BadRequest("by must be node or cluster")
    opened = open_session(request, namespace, cluster, session)
    expired = note(opened.expired, "metrics")
    if expired is not None:  # said so, where an unknown metric would be a 404
        return {"name": name, "step_s": step_s or DEFAULT_STEP_S, "agg": agg, "by": by, "series": [],
                "expired": expired}  # fmt: skip
    cur = opened.cursor("metrics")
    if step_s is None:
        step_s = DEFAULT_STEP_S
        known = [item for item in queries.metric_names(cur, name) if item["name"] == name]
        if known:
            first = known[0]["first_ms"] if start_ms is None else start_ms
            last = known[0]["last_ms"] if end_ms is None else end_ms
            step_s = default_step_s(first, last)
    series = queries.metric_range(cur, name, start_ms, end_ms, step_s, agg, by == "node", label)
    return {"name": name, "step_s": step_s, "agg": agg, "by": by, "series": series, "expired": None}
