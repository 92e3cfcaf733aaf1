"""KubeRay's history-server end-to-end assertions on a dead cluster (historyserver_deadcluster_test.go in
ray-project/kuberay), ported to our per-session prefix and run on the real-Ray session after its cluster is
gone: every endpoint answers 200 with valid, non-empty JSON, and the tasks of each job by its job id. Where
KubeRay only logs a difference from the live answer, we assert what the live state API listed."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from .uiserver import served

pytestmark = pytest.mark.ray

ENDPOINTS = ["/api/v0/tasks", "/api/jobs/", "/api/v0/tasks/summarize", "/logical/actors", "/nodes?view=summary"]


@pytest.fixture(scope="module")
def dead(ray_run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with served(ray_run.storage, tmp_path_factory.mktemp("kuberay-cache"), refresh_interval=3600) as url:
        prefix = f"{url}/ray/tests/e2e/{ray_run.session_name}"
        with httpx.Client(base_url=prefix, timeout=60) as client:
            yield client


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_dead_clusters_endpoint_answers_valid_json(dead: httpx.Client, endpoint: str) -> None:
    answer = dead.get(endpoint)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body not in ({}, [], None)


def test_the_tasks_of_each_job_by_its_job_id(ray_run, dead: httpx.Client) -> None:
    jobs = dead.get("/api/jobs/").json()
    job_ids = [job["job_id"] for job in jobs if job.get("job_id")]
    assert len(job_ids) >= 2  # the submissions (KubeRay submits two RayJobs) and the direct driver
    for job_id in job_ids:
        path = f"/api/v0/tasks?filter_keys=job_id&filter_predicates=%3D&filter_values={quote(job_id)}&limit=10000"
        answer = dead.get(path)
        assert answer.status_code == 200, answer.text
        tasks = answer.json()["data"]["result"]["result"]
        assert all(task["job_id"] == job_id for task in tasks)
        live = {(t["task_id"], t["attempt_number"]) for t in ray_run.state["tasks"] if t["job_id"] == job_id}
        assert live <= {(t["task_id"], t["attempt_number"]) for t in tasks}, job_id


def test_each_actor_by_its_id(ray_run, dead: httpx.Client) -> None:
    actors = dead.get("/logical/actors").json()["data"]["actors"]
    assert {actor["actor_id"] for actor in ray_run.state["actors"]} <= set(actors)
    for actor_id in actors:
        answer = dead.get(f"/logical/actors/{actor_id}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["detail"]["actorId"] == actor_id
