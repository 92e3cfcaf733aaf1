"""Two sessions side by side, usually the same job run twice: per function, how many attempts, how many
failed and how long they took in A and in B, with B - A and, for durations, B / A.

Each side is read from its own opened session (the snapshot's `tasks` through `queries.task_summary`), so
a comparison costs two task summaries, which the tasks pages share (same memo key).
"""

from __future__ import annotations

from typing import Any, Literal

import duckdb

from . import queries
from .access import EVERYONE, Viewer
from .catalog import SessionQuery
from .errors import BadRequest, NotFound
from .server import HistoryServer
from .sessions import OpenSession

COUNTS = ("attempts", "finished", "failed")
DURATIONS = ("duration_ms_p50", "duration_ms_p95", "duration_ms_max")

# A duration counts as changed only past both bounds: run-to-run noise on a busy cluster is a few
# percent, and a 2 ms task taking 3 ms is +50% yet nothing anyone should chase.
SLOWER_RATIO = 1.10
FASTER_RATIO = 1 / SLOWER_RATIO
MIN_CHANGE_MS = 10.0

Change = Literal["worse", "better"]

# The jobs a person recognises: Ray's internal drivers (dashboard, job agent) are hidden, as /api/jobs/ does.
JOBS_SQL = """
    SELECT job_id, submission_id, status, entrypoint, message, start_time_ms, end_time_ms,
           end_time_ms - start_time_ms AS duration_ms
    FROM jobs WHERE NOT coalesce(is_hidden, false)
    ORDER BY start_time_ms NULLS LAST, job_id NULLS LAST, submission_id
"""
JOB_SQL = """
    SELECT job_id, submission_id, status, entrypoint, message, start_time_ms, end_time_ms,
           end_time_ms - start_time_ms AS duration_ms
    FROM jobs WHERE job_id = ? OR submission_id = ?
    -- a job id wins over a submission id that happens to be spelt the same
    ORDER BY job_id = ? DESC LIMIT 1
"""


def parse_session(value: str, side: str) -> tuple[str, str, str]:
    """The three parts of namespace/cluster/session; BadRequest naming the side otherwise."""
    parts = value.strip().strip("/").split("/")
    if parts[:1] == ["sessions"]:
        # A session page's path pasted as it is (/sessions/ns/cluster/session) is accepted too.
        parts = parts[1:]
    if len(parts) != 3 or not all(parts):
        raise BadRequest(f"{side} must be namespace/cluster/session, got {value!r}")
    return parts[0], parts[1], parts[2]


def recent_sessions(server: HistoryServer, limit: int = 200, viewer: Viewer = EVERYONE) -> list[dict[str, Any]]:
    """The newest sessions of the catalog `viewer` may see, to pick two from."""
    _, items = server.catalog.list_sessions(SessionQuery(limit=limit, namespaces=server.namespaces_of(viewer)))
    return [
        {"path": f"{row['namespace']}/{row['cluster']}/{row['session']}", "namespace": row["namespace"],
         "cluster": row["cluster"], "session": row["session"], "status": row.get("status"),
         "start_time_ms": row.get("start_time_ms"), "owner_name": row.get("owner_name")}
        for row in items
    ]  # fmt: skip


def _jobs(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    return queries.rows(cur.execute(JOBS_SQL))


def _find_job(cur: duckdb.DuckDBPyConnection, job: str, side: str, path: str) -> dict[str, Any]:
    found = queries.rows(cur.execute(JOB_SQL, [job, job, job]))
    if not found:
        known = [row["submission_id"] or row["job_id"] for row in _jobs(cur)]
        raise NotFound(f"no job or submission {job!r} in session {side} ({path}); its jobs: "
                       + (", ".join(str(name) for name in known) or "none"))  # fmt: skip
    return found[0]


def _summary(opened: OpenSession, job_id: str | None) -> list[dict[str, Any]]:
    # The same memo key as the tasks summary and job pages, so any of them warms the others.
    summary = opened.memoized(("tasks/summary", job_id or ""), lambda: queries.task_summary(opened.cursor(), job_id))
    return summary  # type: ignore[no-any-return]


def read_side(server: HistoryServer, value: str, side: str, job: str | None,
              viewer: Viewer = EVERYONE) -> dict[str, Any]:  # fmt: skip
    """One session's part of a comparison: its catalog facts, its jobs, the job compared (if any) and
    the task summary per function (of that job, or of the whole session)."""
    namespace, cluster, session = parse_session(value, side)
    row = server.session_row(namespace, cluster, session, viewer)
    opened = server.open(namespace, cluster, session, viewer)
    cur = opened.cursor()
    path = f"{namespace}/{cluster}/{session}"
    chosen = _find_job(cur, job, side, path) if job else None
    if chosen is not None and chosen["job_id"] is None:
        # A submission whose driver never started ran no task; summarising job_id None would mean
        # the whole session instead.
        functions: list[dict[str, Any]] = []
    else:
        functions = _summary(opened, chosen["job_id"] if chosen else None)
    totals = {name: sum(f[name] or 0 for f in functions) for name in COUNTS}
    return {
        "path": path, "namespace": namespace, "cluster": cluster, "session": session,
        "url": f"/sessions/{namespace}/{cluster}/{session}", "status": row.get("status"),
        "start_time_ms": row.get("start_time_ms"), "duration_ms": row.get("duration_ms"),
        "owner_name": row.get("owner_name"), "job": chosen, "jobs": _jobs(cur), "totals": totals,
        "functions": functions,
    }  # fmt: skip


def _count_change(name: str, delta: int) -> Change | None:
    # Only failures have a direction: more attempts or more finished tasks may just be more work.
    if name != "failed" or delta == 0:
        return None
    return "worse" if delta > 0 else "better"


def _duration_change(a: float, b: float) -> Change | None:
    if abs(b - a) < MIN_CHANGE_MS:
        return None
    if (a > 0 and b / a >= SLOWER_RATIO) or (a == 0 and b > 0):
        return "worse"
    if a > 0 and b / a <= FASTER_RATIO:
        return "better"
    return None


def compare_function(name: str, a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    """One function's row: its figures in A and B (None where it did not run), B - A, B / A for durations,
    and which figures got worse or better."""
    keep = (*COUNTS, *DURATIONS)
    row: dict[str, Any] = {
        "func_or_class_name": name,
        "a": {key: a[key] for key in keep} if a else None,
        "b": {key: b[key] for key in keep} if b else None,
        "delta": {}, "ratio": {}, "change": {},
        "presence": "both" if a and b else "only_a" if a else "only_b",
    }  # fmt: skip
    for key in keep:
        before, after = (a or {}).get(key), (b or {}).get(key)
        if key in COUNTS:
            # A function missing on one side ran zero times there: its counts compare against 0.
            before, after = before or 0, after or 0
        if before is None or after is None:
            row["delta"][key] = None
            if key in DURATIONS:
                row["ratio"][key] = None
            continue
        # Quantiles are interpolated: 3 decimals are more than a millisecond figure can mean.
        row["delta"][key] = round(after - before, 3) if isinstance(after - before, float) else after - before
        if key in DURATIONS:
            row["ratio"][key] = round(after / before, 3) if before else None
            change = _duration_change(before, after)
        else:
            change = _count_change(key, after - before)
        if change is not None:
            row["change"][key] = change
    return row


def compare_functions(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every function of either side, the busiest first (most attempts on either side), then by name."""
    by_name_a = {row["func_or_class_name"]: row for row in a}
    by_name_b = {row["func_or_class_name"]: row for row in b}
    names = sorted(by_name_a.keys() | by_name_b.keys(), key=lambda name: (
        -max((by_name_a.get(name) or {}).get("attempts", 0), (by_name_b.get(name) or {}).get("attempts", 0)),
        str(name)))  # fmt: skip
    return [compare_function(name, by_name_a.get(name), by_name_b.get(name)) for name in names]


def compare_sessions(server: HistoryServer, a: str, b: str, job: str | None = None,
                     job_b: str | None = None, viewer: Viewer = EVERYONE) -> dict[str, Any]:  # fmt: skip
    """A against B: each side (read_side), the functions aligned, and how many figures got worse or better.

    `job` (a job id or a submission id) picks the job compared on both sides; `job_b` names B's when it
    differs (a submission id Ray generated is new each run)."""
    side_a = read_side(server, a, "A", job, viewer)
    side_b = read_side(server, b, "B", job_b or job, viewer)
    functions = compare_functions(side_a.pop("functions"), side_b.pop("functions"))
    totals = {name: side_b["totals"][name] - side_a["totals"][name] for name in COUNTS}
    worse = sum(1 for row in functions if "worse" in row["change"].values())
    # A function can be in both counts: more failures yet faster, say.
    better = sum(1 for row in functions if "better" in row["change"].values())
    return {
        "a": side_a, "b": side_b, "job": job, "job_b": job_b, "functions": functions,
        "totals_delta": totals,
        "functions_worse": worse, "functions_better": better,
        "thresholds": {"slower_ratio": SLOWER_RATIO, "min_change_ms": MIN_CHANGE_MS},
    }  # fmt: skip
