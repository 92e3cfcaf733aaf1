"""Ray 2.60's job REST API (`ray.dashboard.modules.job.job_head`), read-only: the list, one job by
submission id or job id, and a submission's driver log. Plain JSON bodies and text errors, as Ray's."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from archive.logs import rebuild_file

from .. import queries
from ..views.common import session_of_path
from . import rows
from .envelope import RayJSON
from .logs import GONE, expired_message
from .resources import JOBS

router = APIRouter()


def _jobs(request: Request) -> list[dict[str, Any]]:
    """Submissions first, then drivers of their own, as Ray's list_jobs concatenates them (Ray's order
    within each is its KV store's; ours the snapshot's, by job id)."""
    cur = session_of_path(request).cursor()
    found = [rows.job(row) for row in rows.select(cur, JOBS, [f"NOT ({JOBS.hidden})"], [], None)]
    return [job for job in found if job["type"] == "SUBMISSION"] + [job for job in found if job["type"] != "SUBMISSION"]


def find_job(jobs: list[dict[str, Any]], job_or_submission_id: str) -> dict[str, Any] | None:
    """`find_job_by_ids`: a driver job by its id, then the submission whose driver has that id, then a
    submission by its submission id."""
    for matches in (
        lambda job: job["type"] != "SUBMISSION" and job["job_id"] == job_or_submission_id,
        lambda job: job["type"] == "SUBMISSION" and job["job_id"] == job_or_submission_id,
        lambda job: job["type"] == "SUBMISSION" and job["submission_id"] == job_or_submission_id,
    ):
        found = next((job for job in jobs if matches(job)), None)
        if found is not None:
            return found
    return None


def _missing(job_or_submission_id: str) -> Response:
    return PlainTextResponse(f"Job {job_or_submission_id} does not exist", status_code=404)


@router.get("/api/jobs/", include_in_schema=False)
def list_jobs(request: Request) -> Response:
    return RayJSON(_jobs(request))


@router.get("/api/jobs/{job_or_submission_id}", include_in_schema=False)
def get_job(request: Request, job_or_submission_id: str) -> Response:
    job = find_job(_jobs(request), job_or_submission_id)
    return RayJSON(job) if job is not None else _missing(job_or_submission_id)


@router.get("/api/jobs/{job_or_submission_id}/logs", include_in_schema=False)
def get_job_logs(request: Request, job_or_submission_id: str) -> Response:
    job = find_job(_jobs(request), job_or_submission_id)
    if job is None:
        return _missing(job_or_submission_id)
    if job["type"] != "SUBMISSION":
        return PlainTextResponse("Can only get logs of submission type jobs", status_code=400)
    opened = session_of_path(request)
    expired = expired_message(opened)
    if expired is not None:
        return PlainTextResponse(expired, status_code=GONE)
    cur = opened.cursor("logs")
    file_id = rows.driver_log_file(cur, job["submission_id"])
    # Ray answers "" when the supervisor wrote no log yet; a submission whose log was not archived is the same.
    text = rebuild_file(queries.log_rows(cur, file_id)).decode("utf-8", "replace") if file_id else ""
    return RayJSON({"logs": text})
