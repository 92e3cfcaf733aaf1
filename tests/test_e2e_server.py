"""End to end with real Ray and SeaweedFS: the history server gives back what Ray's state API listed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from historyserver.app import create_app
from historyserver.server import HistoryServer, ServerSettings

from .raycluster import KILLED_SUBMISSION_ID, SUBMISSION_ID

pytestmark = pytest.mark.ray
TERMINAL = ("FINISHED", "FAILED")


def serve(ray_run, cache_dir: Path) -> tuple[HistoryServer, TestClient]:
    history = HistoryServer(ray_run.storage, ServerSettings(cache_dir=cache_dir, refresh_interval=3600))
    return history, TestClient(create_app(history))


@pytest.fixture(scope="module")
def api(ray_run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HistoryServer, TestClient, str]]:
    history, client = serve(ray_run, tmp_path_factory.mktemp("cache"))
    with client:
        base = f"/api/v1/sessions/tests/e2e/{ray_run.session_name}"
        yield history, client, base


def listed(client: TestClient, path: str) -> list[dict]:
    answer = client.get(path, params={"limit": 1000}).json()
    assert answer["total"] == len(answer["items"]), "more than one page: raise the limit"
    return answer["items"]


def test_tasks_come_back_with_the_ids_states_names_errors_and_nodes_the_state_api_listed(ray_run, api) -> None:
    _, client, base = api
    ours = {(task["task_id"], task["attempt_number"]): task for task in listed(client, f"{base}/tasks")}
    assert len(ray_run.state["tasks"]) >= 20
    for task in ray_run.state["tasks"]:
        mine = ours[task["task_id"], task["attempt_number"]]
        for field in ("name", "func_or_class_name", "type", "job_id", "node_id", "actor_id"):
            assert mine[field] == task[field], (task["name"], field)
        if task["state"] in TERMINAL:
            assert (mine["state"], mine["error_type"]) == (task["state"], task["error_type"]), task["name"]
        elif mine["state"] not in TERMINAL:
            # Still going when the state API was asked; the cluster is gone now and Ray reported no end:
            # its last state, no failure made up, and saying why its end is unknown.
            assert mine["end_unknown"] and mine["end_time_ms"] is None and mine["error_type"] is None, task["name"]


def test_actors_jobs_and_nodes_come_back_with_the_same_ids(ray_run, api) -> None:
    _, client, base = api
    actors = {actor["actor_id"]: actor for actor in listed(client, f"{base}/actors")}
    for actor in ray_run.state["actors"]:
        assert actors[actor["actor_id"]]["class_name"] == actor["class_name"]
        if actor["state"] == "DEAD":
            assert actors[actor["actor_id"]]["state"] == "DEAD"
    nodes = {node["node_id"] for node in listed(client, f"{base}/nodes")}
    assert nodes == {node["node_id"] for node in ray_run.state["nodes"]}
    jobs = {job["job_id"] for job in listed(client, f"{base}/jobs") if job["job_id"]}
    assert {job["job_id"] for job in ray_run.state["jobs"] if job.get("job_id")} <= jobs


def test_the_submission_and_its_driver_agree(ray_run, api) -> None:
    _, client, base = api
    job = client.get(f"{base}/jobs/{SUBMISSION_ID}").json()
    assert job["status"] == ray_run.submission["status"] == "SUCCEEDED"
    driver = next(entry for entry in ray_run.state["jobs"] if entry.get("submission_id") == SUBMISSION_ID)
    assert job["job_id"] == driver["job_id"]
    assert client.get(f"{base}/jobs/{driver['job_id']}").json()["submission_id"] == SUBMISSION_ID
    # Across sessions too, where operators look for it.
    [indexed] = client.get("/api/v1/jobs", params={"submission_id": SUBMISSION_ID}).json()["items"]
    assert (indexed["session"], indexed["job_id"], indexed["status"]) == (
        ray_run.session_name, driver["job_id"], "SUCCEEDED")  # fmt: skip


def test_a_job_killed_with_its_cluster_shows_its_tasks_end_unknown_with_the_reason(api) -> None:
    _, client, base = api
    sleepers = client.get(f"{base}/tasks", params={"name": "sleep_for_an_hour", "detail": "true"}).json()["items"]
    assert len(sleepers) == 2
    for task in sleepers:
        # Ray never reported their end: not made FAILED, not RUNNING unexplained.
        assert (task["state"], task["end_time_ms"], task["error_type"]) == ("RUNNING", None, None)
        assert task["end_unknown"] and "RUNNING" in task["end_unknown_reason"]
    killed = client.get(f"{base}/jobs/{KILLED_SUBMISSION_ID}").json()
    assert killed["status"] not in ("RUNNING", "PENDING")
    summary = client.get(base).json()["summary"]
    assert summary["incomplete"]["tasks_end_unknown"] >= 2
    dropped = summary["incomplete"]["ray_task_events_dropped"]  # Ray's own counter, when it was scraped
    assert dropped is None or all(isinstance(count, int) for count in dropped.values())
    # What a person sees: the tasks listed with "end unknown", the task page with why, the overview says so.
    page = base.removeprefix("/api/v1")
    listed = client.get(f"{page}/tasks", params={"name": "sleep_for_an_hour"}, headers={"accept": "text/html"}).text
    assert listed.count(">end unknown</span>") == 2
    one = client.get(f"{page}/tasks/{sleepers[0]['task_id']}", headers={"accept": "text/html"}).text
    assert "end unknown" in one and sleepers[0]["end_unknown_reason"] in one.replace("&#39;", "'")
    overview = client.get(page, headers={"accept": "text/html"}).text
    assert "have no recorded end" in overview


def test_a_second_server_reads_the_written_snapshot_and_replays_nothing(ray_run, api, tmp_path: Path) -> None:
    first, client, base = api
    client.get(base)  # the first server derived the snapshot and wrote it back
    assert first.sessions.snapshots.derived == 1
    first.sessions.snapshots.wait_written()
    second, other = serve(ray_run, tmp_path / "another-cache")
    with other:
        assert other.get(f"{base}/tasks").json()["total"] == client.get(f"{base}/tasks").json()["total"]
    assert second.sessions.snapshots.derived == 0
    opened = second.open("tests", "e2e", ray_run.session_name)
    assert opened.snapshot.source == "archive"
