"""Jobs: across every session of the archive (the job index), and one session's."""

from __future__ import annotations

from typing import Any

from fastapi import Query, Request

from .. import queries
from ..access import viewer_of
from ..errors import NotFound
from ..jobindex import JobQuery
from .common import NO_ROWS, SESSION_PATH, Views, listing, now_ms, open_session, parse_age_ms, server_of

views = Views("jobs")


@views.get("/jobs", template="jobs.html", refused=NO_ROWS)
def list_all_jobs(
    request: Request, namespace: str | None = None, cluster: str | None = None,
    queue: str | None = Query(None, description="the Kueue queue of the job's cluster"),
    status: str | None = Query(None, description="PENDING, RUNNING, STOPPED, SUCCEEDED or FAILED"),
    submission_id: str | None = None, job_id: str | None = None,
    entrypoint: str | None = Query(None, description="text the entrypoint contains, any case"),
    metadata: list[str] = Query([], description="key=value of the submission's metadata, repeat for several"),
    started_after_ms: int | None = None, started_before_ms: int | None = None,
    since: str | None = Query(None, description="started within this long before now: 90m, 24h, 7d"),
    include_hidden: bool = Query(False, description="also Ray's internal drivers, which /api/jobs/ hides"),
    sort: str | None = Query(None, description="a column, '-' first to reverse: -start_time_ms"),
    limit: int = 100, offset: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Jobs of every session, with the session they ran in. Sessions are indexed when opened, and ended
    ones in the background: `sessions_pending` says how many are still to come."""
    server = server_of(request)
    if since is not None:
        started_after_ms = max(started_after_ms or 0, now_ms() - parse_age_ms(since))
    visible = server.namespaces_of(viewer_of(request))
    query = JobQuery(
        namespace=namespace, cluster=cluster, queue=queue, status=status, submission_id=submission_id, job_id=job_id,
        entrypoint=entrypoint, metadata=metadata, started_after_ms=started_after_ms,
        started_before_ms=started_before_ms, include_hidden=include_hidden, sort=sort, limit=limit, offset=offset,
        namespaces=visible,
    )  # fmt: skip
    total, items = server.jobs.list_jobs(query)
    # The index's progress too counts only what the viewer may see.
    return {"total": total, "items": items, "sessions_indexed": server.jobs.sessions_indexed(visible),
            "sessions_pending": server.pending_for(visible)}  # fmt: skip


@views.get(SESSION_PATH + "/jobs", template="session_jobs.html", refused=NO_ROWS)
def list_jobs(request: Request, namespace: str, cluster: str, session: str, status: str | None = None,
              submission_id: str | None = None, sort: str | None = None, limit: int = 100,
              offset: int = 0) -> dict[str, Any]:  # fmt: skip
    cur = open_session(request, namespace, cluster, session).cursor()
    filters = {"status": status, "submission_id": submission_id}
    return listing(*queries.page(cur, queries.JOBS, queries.ListQuery(filters, sort, limit, offset)))


@views.get(SESSION_PATH + "/jobs/{job_id}", template="job.html")
def get_job(request: Request, namespace: str, cluster: str, session: str, job_id: str) -> dict[str, Any]:
    """A job by its job id, or a submission (which may never have had a driver) by its submission id; with
    its functions (attempts, failures, duration percentiles), its failed tasks, its actors and where its
    driver's log is."""
    opened = open_session(request, namespace, cluster, session)
    cur = opened.cursor()
    try:
        job = queries.one(cur, queries.JOBS, job_id=job_id)
    except NotFound:
        job = queries.one(cur, queries.JOBS, submission_id=job_id)
    if not job.get("job_id"):  # a submission whose driver never started: nothing ran
        return {**job, "functions": [], "failed_tasks": {"total": 0, "items": []}, "actors": {"total": 0, "items": []},
                "driver_log": driver_log(opened.cursor("logs"), job)}  # fmt: skip
    failed = queries.ListQuery({"job_id": job["job_id"], "state": "FAILED"}, None, 100, detail=False)
    actors = queries.ListQuery({"job_id": job["job_id"]}, None, 100)
    return {
        **job,
        "functions": opened.memoized(
            ("tasks/summary", job["job_id"]), lambda: queries.task_summary(cur, job["job_id"])
        ),
        "failed_tasks": listing(*queries.page(cur, queries.TASKS, failed, opened.task_order)),
        "actors": listing(*queries.page(cur, queries.ACTORS, actors)),
        "driver_log": driver_log(opened.cursor("logs"), job),
    }


def driver_log(cur: Any, job: dict[str, Any]) -> dict[str, Any] | None:
    """The file the job's driver printed to: a submission's job-driver log, else the driver's core log."""
    names = [f"job-driver-{job['submission_id']}.log"] if job.get("submission_id") else []
    if job.get("job_id") and job.get("driver_pid"):
        names.append(f"python-core-driver-{job['job_id']}{'f' * 48}_{job['driver_pid']}.log")
    for name in names:
        found = queries.log_files(cur, None, name)
        if found:
            return {"node_id": found[0]["node_id"], "filename": found[0]["filename"], "lines": found[0]["lines"]}
    return None
