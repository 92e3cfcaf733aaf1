"""Two sessions side by side (the same job run twice): per function attempts, failures and durations."""

from __future__ import annotations

from typing import Any

from fastapi import Query, Request

from ..access import viewer_of
from ..comparison import compare_sessions, recent_sessions
from .common import Views, server_of

views = Views("compare")


@views.get("/compare", template="compare.html")
def compare(
    request: Request,
    a: str | None = Query(None, description="session A: namespace/cluster/session"),
    b: str | None = Query(None, description="session B: namespace/cluster/session"),
    job: str | None = Query(None, description="a job id or submission id: compare that job only (in both)"),
    job_b: str | None = Query(None, description="B's job when it is named differently from A's"),
) -> dict[str, Any]:  # fmt: skip
    """A and B per function (attempts, finished, failed, duration p50/p95/max), with B - A and B / A; the
    jobs of each. Without both sessions: the recent sessions to pick from."""
    server = server_of(request)
    viewer = viewer_of(request)
    # The picker is on every page, so a comparison can be changed without going back.
    choices = recent_sessions(server, viewer=viewer)
    if not a or not b:
        return {"a": None, "b": None, "job": job, "job_b": job_b, "functions": [], "sessions": choices}
    return {**compare_sessions(server, a, b, job or None, job_b or None, viewer), "sessions": choices}
