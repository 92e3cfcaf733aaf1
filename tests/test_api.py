"""The JSON API's contract, on an archive a real collector made from a real Ray 2.60 capture.

The capture's POSTs are sent to a collector, which also tails the capture's export file, ships its
logs and polls a dashboard answering what the live one answered; then the collector is stopped,
as at the end of a RayJob. What the live dashboard listed must come back from the API.
"""

from __future__ import annotations

import io
import json
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from archive.storage import open_storage
from historyserver.app import create_app
from historyserver.server import HistoryServer, ServerSettings

from .conftest import FIXTURES, fixture_bytes
from .uiserver import captured_archive

SESSION = "session_2026-11-28_19-03-57_108652_5250"
NODE = "50dae9eb11ba41e336fa66cb35aa1a3832f70b5b1c80e9d237bec012"
BASE = f"/api/v1/sessions/default/local/{SESSION}"


def dashboard_answer(name: str) -> dict:
    return json.loads(fixture_bytes("dashboard_api", name).decode())


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return captured_archive(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def client(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = ServerSettings(cache_dir=tmp_path_factory.mktemp("cache"), refresh_interval=3600)
    with TestClient(create_app(HistoryServer(open_storage(str(archive)), settings))) as test_client:
        yield test_client


def test_the_session_is_listed_closed_with_what_its_manifest_says(client: TestClient) -> None:
    answer = client.get("/api/v1/sessions").json()
    assert answer["total"] == 1
    row = answer["items"][0]
    assert (row["namespace"], row["cluster"], row["session"], row["status"]) == ("default", "local", SESSION, "closed")
    assert client.get("/api/v1/sessions", params={"status": "running"}).json()["total"] == 0
    assert client.get("/api/v1/sessions", params={"namespace": "elsewhere"}).json() == {"total": 0, "items": []}


def test_one_session_has_a_summary(client: TestClient) -> None:
    answer = client.get(BASE).json()
    assert answer["session"] == SESSION
    summary = answer["summary"]
    assert [node["node_id"] for node in summary["nodes"]] == [NODE]
    live_node = dashboard_answer("api_v0_nodes_detail_1.json")["data"]["result"]["result"][0]
    assert summary["resources_total"] == {name: amount for name, amount in live_node["resources_total"].items()
                                          if not name.startswith("node:")}  # fmt: skip
    assert summary["tasks_by_state"]["FINISHED"] > 0 and summary["tasks_by_state"]["FAILED"] > 0
    assert summary["jobs_by_status"]["SUCCEEDED"] >= 1
    # Two actors were alive when the cluster was deleted and Ray reported no death for them; the scrape has
    # Ray's own count of dropped task events.
    assert summary["incomplete"] == {
        "tasks_end_unknown": 0, "tasks_without_definition": 0, "actors_end_unknown": 2,
        "actors_without_definition": 0, "ray_task_events_dropped": {"PROFILE_EVENT": 0, "STATUS_EVENT": 0},
    }  # fmt: skip
    assert summary["actors_by_state"] == {"DEAD": 5, "ALIVE": 2}


def test_tasks_come_back_as_the_live_dashboard_listed_them(client: TestClient) -> None:
    live = dashboard_answer("api_v0_tasks_limit_1000_detail_1.json")["data"]["result"]["result"]
    answer = client.get(f"{BASE}/tasks", params={"limit": 1000}).json()
    ours = {(task["task_id"], task["attempt_number"]): task for task in answer["items"]}
    assert answer["total"] == len(ours)
    for task in live:
        mine = ours[task["task_id"], task["attempt_number"]]
        for field in ("state", "name", "func_or_class_name", "type", "job_id", "node_id", "worker_id", "actor_id",
                      "error_type"):  # fmt: skip
            assert mine[field] == task[field], (task["task_id"], field)


def test_tasks_filter_sort_and_page(client: TestClient) -> None:
    failed = client.get(f"{BASE}/tasks", params={"state": "FAILED"}).json()
    assert failed["total"] >= 2 and all(task["state"] == "FAILED" for task in failed["items"])
    assert all(task["error_type"] for task in failed["items"])
    by_duration = client.get(f"{BASE}/tasks", params={"sort": "-duration_ms", "limit": 5}).json()["items"]
    durations = [task["duration_ms"] for task in by_duration]
    assert durations == sorted(durations, reverse=True) and len(durations) == 5
    page_two = client.get(f"{BASE}/tasks", params={"limit": 5, "offset": 5}).json()
    first_ten = client.get(f"{BASE}/tasks", params={"limit": 10}).json()["items"]
    assert page_two["items"] == first_ten[5:]
    # As Ray's state API: the list's columns, or every column with detail.
    assert "state_times" not in first_ten[0] and {"task_id", "error_message", "duration_ms"} <= first_ten[0].keys()
    detailed = client.get(f"{BASE}/tasks", params={"limit": 10, "detail": "true"}).json()["items"]
    assert [task["task_id"] for task in detailed] == [task["task_id"] for task in first_ten]
    assert all(isinstance(task["state_times"], dict) and task["required_resources"] is not None for task in detailed)


def test_drivers_own_tasks_are_left_out_unless_asked_for_as_ray_leaves_them_out(client: TestClient) -> None:
    listed = client.get(f"{BASE}/tasks", params={"limit": 1000}).json()
    drivers = client.get(f"{BASE}/tasks", params={"type": "DRIVER_TASK"}).json()
    everything = client.get(f"{BASE}/tasks", params={"limit": 1000, "include_drivers": "true"}).json()
    assert drivers["total"] > 0 and {task["type"] for task in drivers["items"]} == {"DRIVER_TASK"}
    assert "DRIVER_TASK" not in {task["type"] for task in listed["items"]}
    assert everything["total"] == listed["total"] + drivers["total"]
    assert sum(client.get(BASE).json()["summary"]["tasks_by_state"].values()) == listed["total"]
    driver = drivers["items"][0]["task_id"]
    assert client.get(f"{BASE}/tasks/{driver}").json()["type"] == "DRIVER_TASK"  # still there by its id


def test_one_task_has_every_attempt(client: TestClient) -> None:
    retried = next(
        task for task in client.get(f"{BASE}/tasks", params={"limit": 1000}).json()["items"]
        if task["attempt_number"] == 1
    )  # fmt: skip
    answer = client.get(f"{BASE}/tasks/{retried['task_id']}").json()
    assert [attempt["attempt_number"] for attempt in answer["attempts"]] == [0, 1]
    assert answer["attempts"][0]["state"] == "FAILED"


def test_task_summary_counts_states_per_function(client: TestClient) -> None:
    items = client.get(f"{BASE}/tasks/summary").json()["items"]
    rows = {item["func_or_class_name"]: item for item in items}
    total = client.get(f"{BASE}/tasks").json()["total"]
    assert sum(item["attempts"] for item in items) == total
    assert any(item["failed"] for item in rows.values())
    assert all(item["duration_ms_p50"] is None or item["duration_ms_p50"] <= item["duration_ms_max"]
               for item in rows.values())  # fmt: skip


def test_actors_jobs_nodes_and_placement_groups(client: TestClient) -> None:
    live_actors = dashboard_answer("api_v0_actors_limit_1000_detail_1.json")["data"]["result"]["result"]
    actors = {actor["actor_id"]: actor for actor in client.get(f"{BASE}/actors").json()["items"]}
    for actor in live_actors:
        ours = actors[actor["actor_id"]]
        assert ours["class_name"] == actor["class_name"]
        if actor["state"] == "ALIVE":
            # Alive when the dashboard was asked; the session is closed now and Ray never reported its death:
            # its last state, not a made-up death, and saying its end is unknown.
            assert (ours["state"], ours["end_time_ms"], ours["error_message"]) == ("ALIVE", None, None)
            assert ours["end_unknown"] and "ALIVE" in ours["end_unknown_reason"]
        else:
            assert ours["state"] == actor["state"] and not ours["end_unknown"]
    jobs = client.get(f"{BASE}/jobs").json()["items"]
    visible = {job["submission_id"] or job["job_id"]: job["status"] for job in jobs if not job["is_hidden"]}
    live_jobs = {job["submission_id"] or job["job_id"]: job["status"] for job in dashboard_answer("api_jobs_.json")}
    assert visible == live_jobs
    assert client.get(f"{BASE}/jobs/probe-job-2").json()["status"] == "SUCCEEDED"
    nodes = client.get(f"{BASE}/nodes").json()["items"]
    assert [node["node_id"] for node in nodes] == [NODE]
    groups = client.get(f"{BASE}/placement_groups").json()["items"]
    assert [group["placement_group_id"] for group in groups] == ["ec387092f55e0e4df8bda2e1f2f002000000"]


def test_raw_events_by_type_and_entity(client: TestClient) -> None:
    answer = client.get(f"{BASE}/events", params={"event_type": "TASK_DEFINITION_EVENT", "limit": 5}).json()
    assert answer["total"] > 5 and len(answer["items"]) == 5
    task_id = answer["items"][0]["task_id"]
    for_task = client.get(f"{BASE}/events", params={"task_id": task_id}).json()["items"]
    assert {event["task_id"] for event in for_task} == {task_id}
    assert isinstance(for_task[0]["payload"], dict)


def test_logs_list_download_tail_search_and_zip(client: TestClient, archive: Path) -> None:
    worker = "worker-48e47177eed42ab21019d88d2b782ef8babad866d75ed1f4fb2b4abd-02000000-6355.out"
    files = {item["filename"] for item in client.get(f"{BASE}/logs").json()["items"]}
    assert {worker, "raylet.err", "jobs/supervisor-probe-job-2.log"} <= files
    exact = (FIXTURES / "logs" / "run1" / worker).read_bytes()
    download = client.get(f"{BASE}/logs/file", params={"node_id": NODE, "filename": worker})
    assert download.status_code == 200 and download.content == exact
    tail = client.get(f"{BASE}/logs/lines", params={"node_id": NODE, "filename": worker, "tail": 2}).json()
    assert [line["text"] for line in tail["items"]] == exact.decode().splitlines()[-2:]
    hits = client.get(f"{BASE}/logs/search", params={"pattern": "flaky: .* succeeded"}).json()["items"]
    # The worker printed it while running `flaky`; the driver's log echoes it.
    assert {(hit["filename"], hit["task_name"]) for hit in hits} == {
        (worker, "flaky"),
        ("job-driver-probe-job-2.log", None),
    }
    assert all("succeeded" in hit["text"] for hit in hits)
    bundle = zipfile.ZipFile(io.BytesIO(client.get(f"{BASE}/logs/job/02000000.zip").content))
    assert any(name.endswith(worker) for name in bundle.namelist())


def test_what_a_task_attempt_and_an_actor_printed(client: TestClient) -> None:
    tasks = client.get(f"{BASE}/tasks", params={"name": "flaky", "limit": 10}).json()["items"]
    retried = next(task for task in tasks if task["attempt_number"] == 1)
    # Ray 2.60 sent no byte range for these attempts: the lines come from the worker's markers.
    printed = client.get(f"{BASE}/tasks/{retried['task_id']}/logs", params={"attempt_number": 0}).json()
    assert printed["source"] == "markers"
    assert printed["text"] == "flaky: first attempt, raising RuntimeError\nflaky: retry attempt succeeded\n"
    errors = client.get(f"{BASE}/tasks/{retried['task_id']}/logs", params={"stream": "stderr"})
    assert errors.status_code == 404 and "stderr" in errors.json()["error"]
    counter = next(actor for actor in client.get(f"{BASE}/actors").json()["items"] if actor["class_name"] == "Counter")
    printed = client.get(f"{BASE}/actors/{counter['actor_id']}/logs").json()["text"]
    assert "Counter.incr -> 1" in printed


def test_metrics_names_and_a_range_query(client: TestClient) -> None:
    names = {item["name"]: item for item in client.get(f"{BASE}/metrics", params={"prefix": "ray_"}).json()["items"]}
    assert names["ray_tasks"]["type"] == "gauge" and names["ray_tasks"]["series"] > 1
    answer = client.get(f"{BASE}/metrics/query", params={"name": "ray_tasks", "agg": "sum", "by": "cluster",
                                                           "label": "State=FINISHED"}).json()  # fmt: skip
    [series] = answer["series"]
    assert series["node"] == "cluster" and series["points"][0][1] > 0
    per_node = client.get(f"{BASE}/metrics/query", params={"name": "ray_tasks"}).json()["series"]
    assert [entry["node"] for entry in per_node] == ["node-a"]
    assert client.get(f"{BASE}/metrics/query", params={"name": "no_such_metric"}).status_code == 404
    assert client.get(f"{BASE}/metrics/query", params={"name": "ray_tasks", "agg": "median"}).status_code == 400


def test_the_timeline_is_chrome_trace_json(client: TestClient) -> None:
    trace = client.get(f"{BASE}/timeline").json()
    assert trace and all(span["ph"] == "X" and span["dur"] >= 0 for span in trace)
    assert {"task_id", "name"} <= trace[0]["args"].keys()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/sessions/default/local/session_nope", 404),
        (f"{BASE}/tasks/ffffffffffffffff", 404),
        (f"{BASE}/actors/abc", 404),
        (f"{BASE}/jobs/no-such-job", 404),
        (f"{BASE}/tasks?sort=password", 400),
        (f"{BASE}/tasks?limit=100000", 400),
        (f"{BASE}/tasks?offset=-1", 400),
        (f"{BASE}/tasks?limit=ten", 400),
        ("/api/v1/sessions?sort=secret", 400),
        (f"{BASE}/logs/file?node_id={NODE}&filename=../../../../etc/passwd", 404),
        (f"{BASE}/logs/search?pattern=(unclosed", 400),
        ("/api/v1/sessions/default/local/..%2F..%2Fetc", 404),
        ("/api/v1/sessions/default/lo cal/x", 400),
    ],
)
def test_unknown_things_are_404_and_bad_parameters_400_with_a_reason(client: TestClient, path: str,
                                                                     status: int) -> None:  # fmt: skip
    answer = client.get(path)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]


def test_sql_over_one_session_and_across_the_archive(client: TestClient) -> None:
    counts = client.post("/api/v1/sql", json={
        "sql": "SELECT state, count(*) AS n FROM tasks WHERE type != 'DRIVER_TASK' GROUP BY state ORDER BY state",
        "session": f"default/local/{SESSION}",
    }).json()  # fmt: skip
    by_state = {row["state"]: row["n"] for row in counts}
    assert by_state == client.get(BASE).json()["summary"]["tasks_by_state"]
    sessions = client.post("/api/v1/sql", json={"sql": "SELECT session, status FROM sessions"}).json()
    assert sessions == [{"session": SESSION, "status": "closed"}]
    lines = client.post("/api/v1/sql", json={
        "sql": "SELECT count(*) AS n FROM logs WHERE task_name = 'flaky'", "format": "csv",
        "session": f"default/local/{SESSION}",
    })  # fmt: skip
    assert lines.headers["content-type"].startswith("text/csv") and lines.text.splitlines()[0] == "n"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "COPY (SELECT 1) TO '/tmp/escape.csv'",
        "ATTACH ':memory:' AS other",
        "INSTALL httpfs",
        "SET enable_external_access = true",
        "DELETE FROM tasks",
        "SELECT 1; SELECT 2",
    ],
)
def test_sql_that_tries_to_leave_the_sandbox_is_refused(client: TestClient, sql: str) -> None:
    answer = client.post("/api/v1/sql", json={"sql": sql, "session": f"default/local/{SESSION}"})
    assert answer.status_code == 400
    assert answer.json()["error"]


def test_ray_history_sql_answers_on_the_terminal_and_refuses_with_a_message(archive: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ray_history.cli import main

    common = ["sql", "--archive", str(archive), "--cache-dir", str(tmp_path / "cache")]
    counted = CliRunner().invoke(main, [*common, "--session", f"default/local/{SESSION}", "--format", "csv",
                                        "SELECT count(*) AS n FROM tasks WHERE state = 'FAILED'"])  # fmt: skip
    assert counted.exit_code == 0, counted.output
    assert counted.output.splitlines()[0] == "n" and int(counted.output.splitlines()[1]) >= 2
    wrong = CliRunner().invoke(main, [*common, "--session", "just-a-name", "SELECT 1"])
    assert wrong.exit_code != 0 and "namespace/cluster/session" in wrong.output
    refused = CliRunner().invoke(main, [*common, "SELECT * FROM read_csv('/etc/passwd')"])
    assert refused.exit_code != 0 and "not allowed" in refused.output


@pytest.fixture(scope="module")
def two_clusters(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    """The captured session, and the same run again in namespace team-b: two sessions nobody has opened (no
    snapshot, and no job index object of the first server's, from which this one would index them unopened).
    Nor its catalog objects: team-b is copied here without the change journal a collector writes, so a replica
    trusting their state would find it only at its next full listing."""
    copy = tmp_path_factory.mktemp("two") / "archive"
    shutil.copytree(archive, copy, ignore=shutil.ignore_patterns("snapshots", "jobindex", "catalog"))
    for kind in ("sessions", "events", "logs", "metrics"):
        shutil.copytree(copy / kind / "default", copy / kind / "team-b")
    settings = ServerSettings(cache_dir=tmp_path_factory.mktemp("cache-two"), refresh_interval=0.2)
    with TestClient(create_app(HistoryServer(open_storage(str(copy)), settings))) as test_client:
        yield test_client, copy


def indexed_jobs(client: TestClient, **params: object) -> dict:
    answer = client.get("/api/v1/jobs", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_for_the_index(client: TestClient, sessions: int) -> None:
    deadline = time.monotonic() + 60
    while indexed_jobs(client)["sessions_indexed"] < sessions:
        assert time.monotonic() < deadline, "the job index did not read every ended session"
        time.sleep(0.2)


def test_jobs_of_every_ended_session_are_indexed_without_opening_them(two_clusters: tuple[TestClient, Path]) -> None:
    client, archive_root = two_clusters
    wait_for_the_index(client, 2)
    answer = indexed_jobs(client)
    assert answer["sessions_pending"] == 0
    live = {job["submission_id"] or job["job_id"]: job["status"] for job in dashboard_answer("api_jobs_.json")}
    for namespace in ("default", "team-b"):
        mine = {job["submission_id"] or job["job_id"]: job["status"]
                for job in answer["items"] if job["namespace"] == namespace}  # fmt: skip
        assert mine == live
    assert all(job["session"] == SESSION and job["cluster"] == "local" for job in answer["items"])
    # Deriving them in the background wrote their snapshots back: nobody will replay them again.
    client.app.state.history.sessions.snapshots.wait_written()  # type: ignore[attr-defined]
    for namespace in ("default", "team-b"):
        assert (archive_root / "snapshots" / namespace / "local" / SESSION / "snapshot.json").exists()
    metrics = client.get("/metrics").text
    assert "ray_history_server_jobs_indexed_sessions 2.0" in metrics
    assert "ray_history_server_snapshots_derived 2.0" in metrics


def test_jobs_across_sessions_filter_by_status_time_submission_entrypoint_and_metadata(
    two_clusters: tuple[TestClient, Path],
) -> None:
    client, _ = two_clusters
    wait_for_the_index(client, 2)

    def found(**params: object) -> list[tuple[str, str | None]]:
        return sorted((job["namespace"], job["submission_id"]) for job in indexed_jobs(client, **params)["items"])

    assert found(status="FAILED") == [("default", "probe-job-1"), ("team-b", "probe-job-1")]
    assert found(status="failed", namespace="team-b") == [("team-b", "probe-job-1")]
    assert found(submission_id="probe-job-2") == [("default", "probe-job-2"), ("team-b", "probe-job-2")]
    assert found(entrypoint="DIRECT_DRIVER") == [("default", None), ("team-b", None)]
    assert found(metadata=["owner=probe", "purpose=history-server-research"], namespace="default") == [
        ("default", "probe-job-1"), ("default", "probe-job-2")]  # fmt: skip
    assert found(metadata="owner=somebody-else") == []
    job_two = indexed_jobs(client, submission_id="probe-job-2", namespace="default")["items"][0]
    assert job_two["job_id"] == "02000000" and job_two["metadata"]["owner"] == "probe"
    assert job_two["duration_ms"] == job_two["end_time_ms"] - job_two["start_time_ms"]
    later = found(started_after_ms=job_two["start_time_ms"] + 1, namespace="default")
    assert ("default", "probe-job-2") not in later
    assert found(started_before_ms=job_two["start_time_ms"] + 1, started_after_ms=job_two["start_time_ms"],
                 namespace="default") == [("default", "probe-job-2")]  # fmt: skip
    newest_first = [job["start_time_ms"] for job in indexed_jobs(client, sort="-start_time_ms")["items"]]
    assert newest_first == sorted(newest_first, reverse=True)
    assert indexed_jobs(client, include_hidden=True)["total"] >= indexed_jobs(client)["total"] == 6


@pytest.mark.parametrize("params", [{"status": "DONE"}, {"metadata": "owner"}, {"sort": "password"},
                                    {"limit": 0}, {"offset": -1}, {"started_after_ms": "yesterday"}])  # fmt: skip
def test_bad_job_queries_are_400_with_a_reason(two_clusters: tuple[TestClient, Path], params: dict) -> None:
    client, _ = two_clusters
    answer = client.get("/api/v1/jobs", params=params)
    assert answer.status_code == 400 and answer.json()["error"]


def test_the_timeline_is_derived_on_first_use_and_written_back_for_every_replica(
    two_clusters: tuple[TestClient, Path],
    tmp_path: Path,
) -> None:
    client, archive_root = two_clusters
    wait_for_the_index(client, 2)
    history = client.app.state.history  # type: ignore[attr-defined]
    manifest = archive_root / "snapshots" / "team-b" / "local" / SESSION / "snapshot.json"
    assert "task_profile_events" not in json.loads(manifest.read_bytes())["tables"]
    base = f"/api/v1/sessions/team-b/local/{SESSION}"
    assert client.get(f"{base}/tasks").json()["total"] > 0  # opening the session derives nothing more
    derived = history.sessions.snapshots.derived
    trace = client.get(f"{base}/timeline").json()
    assert trace and history.sessions.snapshots.derived == derived + 1
    assert "task_profile_events" in json.loads(manifest.read_bytes())["tables"]
    assert client.get(f"{base}/timeline").json() == trace and history.sessions.snapshots.derived == derived + 1
    replica = HistoryServer(open_storage(str(archive_root)), ServerSettings(cache_dir=tmp_path, index_jobs=False))
    with TestClient(create_app(replica)) as other:
        assert other.get(f"{base}/timeline").json() == trace
    assert replica.sessions.snapshots.derived == 0
