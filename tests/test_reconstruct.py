"""A session's snapshot tables, rebuilt from a real Ray 2.60 capture, say what the live dashboard said.

The capture (every POST of run 1, its submission-job export file) and the dashboard's answers in
tests/fixtures/ray-2.60/dashboard_api/ come from one live cluster. Where the capture lacks something an
answer shows, the comparison says so next to the field it leaves out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from archive.events import _MAP_FIELDS, camelize, dashboard_answer_to_rows, export_event_to_row, ray_event_to_row
from archive.parquet import parquet_to_table, rows_to_table, table_to_parquet
from archive.schema import EVENTS, SNAPSHOT_TABLES
from historyserver.reconstruct import CLUSTER_TERMINATED, SessionEnd, api_death_cause, build_snapshots

from .conftest import fixture_bytes, fixture_posts

RUNNING = SessionEnd(closed=False, end_ns=None, reason=None)
RUN1_EXPORT = ("export_api_files", "run1_with_enable_ray_event", "event_EXPORT_SUBMISSION_JOB.log")
RUN5_EXPORT = ("export_api_files", "run5_per_type_config_EXPORT_SUBMISSION_JOB.log")
HIDDEN_JOBS = {"01000000", "04000000"}  # the dashboard agent's internal driver and a dashboard subprocess


# --- building the events table as the archive holds it --------------------------------------------------


def dashboard_answer(name: str) -> Any:
    return json.loads(fixture_bytes("dashboard_api", name).decode())


def state_api_rows(name: str) -> list[dict[str, Any]]:
    """The rows of a /api/v0/... answer ({"data": {"result": {"result": [...]}}})."""
    return dashboard_answer(name)["data"]["result"]["result"]


def export_rows(parts: tuple[str, ...], session: str) -> list[dict[str, Any]]:
    lines = fixture_bytes(*parts).decode().splitlines()
    return [export_event_to_row(json.loads(line), session) for line in lines if line.strip()]


def capture_rows(
    posts: list[list[dict[str, Any]]], export: tuple[str, ...], with_dashboard: bool = True
) -> list[dict[str, Any]]:
    """Rows of the events table for a whole capture, as the collector would have archived them."""
    rows = [ray_event_to_row(event) for post in posts for event in post]
    session = rows[0]["session_name"]
    rows += export_rows(export, session)
    if with_dashboard:
        # The dashboard was asked once the workload had ended: its answers are the last poll.
        polled_ns = max(row["timestamp"] for row in rows) + 1_000_000_000
        for endpoint, name in (
            ("placement_groups", "api_v0_placement_groups_detail_1.json"),
            ("jobs", "api_jobs_.json"),
        ):
            rows += dashboard_answer_to_rows(endpoint, dashboard_answer(name), session, None, polled_ns)
    return rows


def rebuild(rows: list[dict[str, Any]], end: SessionEnd = RUNNING) -> dict[str, pa.Table]:
    con = duckdb.connect()
    con.register("events", rows_to_table(rows, EVENTS))
    return build_snapshots(con, end)


def keyed(table: pa.Table, *key: str) -> dict[Any, dict[str, Any]]:
    rows = table.to_pylist()
    index = {tuple(row[name] for name in key) if len(key) > 1 else row[key[0]]: row for row in rows}
    assert len(index) == len(rows), f"{key} is not a key of the table"
    return index


def sorted_rows(table: pa.Table) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=lambda row: json.dumps(row, sort_keys=True, default=str))


def ms(value: float | None) -> int | None:
    """The state API's times are float milliseconds, the snapshots' int milliseconds."""
    return None if value is None else int(value)


def snake_case(value: Any, keep_keys: bool = False) -> Any:
    """An event as Ray sends it with RAY_DASHBOARD_AGGREGATOR_AGENT_PRESERVE_PROTO_FIELD_NAME=1."""
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            name = key if keep_keys else re.sub(r"([A-Z])", r"_\1", key).lower()
            result[name] = snake_case(item, keep_keys=name in _MAP_FIELDS)
        return result
    if isinstance(value, list):
        return [snake_case(item) for item in value]
    return value


@pytest.fixture(scope="module")
def capture() -> list[dict[str, Any]]:
    return capture_rows(fixture_posts(), RUN1_EXPORT)


@pytest.fixture(scope="module")
def rebuilt(capture: list[dict[str, Any]]) -> dict[str, pa.Table]:
    return rebuild(capture)


# --- shapes --------------------------------------------------------------------------------------------


def test_every_snapshot_has_its_schema(rebuilt: dict[str, pa.Table]) -> None:
    assert set(rebuilt) == set(SNAPSHOT_TABLES)
    for name, table in rebuilt.items():
        assert table.schema.equals(SNAPSHOT_TABLES[name], check_metadata=True), name
        assert table.num_rows > 0, name


def test_every_snapshot_round_trips_through_parquet(rebuilt: dict[str, pa.Table]) -> None:
    for name, table in rebuilt.items():
        assert parquet_to_table(table_to_parquet(table)).equals(table), name


def test_a_session_without_events_has_empty_tables() -> None:
    for name, table in rebuild([]).items():
        assert table.num_rows == 0 and table.schema.equals(SNAPSHOT_TABLES[name]), name


def test_the_dashboard_answers_come_from_the_captured_cluster(rebuilt: dict[str, pa.Table]) -> None:
    (node,) = state_api_rows("api_v0_nodes_detail_1.json")
    assert rebuilt["nodes"].column("node_id").to_pylist() == [node["node_id"]]
    assert {row["node_id"] for row in state_api_rows("api_v0_tasks_limit_1000_detail_1.json") if row["node_id"]} == {
        node["node_id"]
    }
    api_actors = {row["actor_id"] for row in state_api_rows("api_v0_actors_limit_1000_detail_1.json")}
    assert api_actors == set(rebuilt["actors"].column("actor_id").to_pylist())


# --- tasks ---------------------------------------------------------------------------------------------

TASK_FIELDS = (
    "state", "name", "func_or_class_name", "type", "job_id", "node_id", "worker_id", "worker_pid", "actor_id",
    "parent_task_id", "placement_group_id", "language", "error_type", "error_message",
)  # fmt: skip


def test_tasks_match_the_state_api(rebuilt: dict[str, pa.Table]) -> None:
    tasks = keyed(rebuilt["tasks"], "task_id", "attempt_number")
    answer = state_api_rows("api_v0_tasks_limit_1000_detail_1.json")
    assert len(answer) == 53
    for expected in answer:
        task = tasks[expected["task_id"], expected["attempt_number"]]
        label = f"{expected['name']} attempt {expected['attempt_number']}"
        for field in TASK_FIELDS:
            assert task[field] == expected[field], f"{label}: {field}"
        for field in ("creation_time_ms", "start_time_ms", "end_time_ms"):
            assert task[field] == ms(expected[field]), f"{label}: {field}"
        assert json.loads(task["required_resources"]) == expected["required_resources"], label
        assert json.loads(task["label_selector"]) == expected["label_selector"], label
        assert task["serialized_runtime_env"] == expected["runtime_env_info"]["serialized_runtime_env"], label
        # The state API lists every transition; the snapshot keeps each state's first report.
        assert json.loads(task["state_times"]) == {e["state"]: ms(e["created_ms"]) for e in expected["events"]}, label
        log_info = task["task_log_info"] and json.loads(task["task_log_info"])
        assert log_info == expected["task_log_info"], label
        assert task["is_retry"] == (expected["attempt_number"] > 0)

    # The state API leaves drivers out, and the dashboard was asked before the last tasks ran (its own
    # /api/data/datasets call started _StatsActor.get_datasets).
    asked_ms = max(row["creation_time_ms"] for row in answer)
    extra = [task for key, task in tasks.items() if key not in {(a["task_id"], a["attempt_number"]) for a in answer}]
    assert {task["job_id"] for task in extra if task["type"] == "DRIVER_TASK"} == {"01000000", "02000000", "03000000",
                                                                                  "04000000"}  # fmt: skip
    assert all(task["type"] == "DRIVER_TASK" or task["creation_time_ms"] > asked_ms for task in extra)


def test_retries_and_failures_keep_each_attempt(rebuilt: dict[str, pa.Table]) -> None:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for task in sorted(rebuilt["tasks"].to_pylist(), key=lambda task: task["attempt_number"]):
        by_name.setdefault(task["name"], []).append(task)
    flaky, crashes = by_name["flaky"], by_name["crashes_worker"]
    assert [(t["state"], t["error_type"]) for t in flaky] == [
        ("FAILED", "TASK_EXECUTION_EXCEPTION"),
        ("FINISHED", None),
    ]
    assert [t["is_retry"] for t in flaky] == [False, True] and flaky[0]["task_id"] == flaky[1]["task_id"]
    assert "transient failure, should be retried" in flaky[0]["error_message"]
    assert "\x1b[" not in flaky[0]["error_message"]  # the event keeps terminal colours; the state API does not
    assert [(t["state"], t["error_type"]) for t in crashes] == [("FAILED", "WORKER_DIED")] * 2
    (always,) = by_name["always_fails"]
    assert always["duration_ms"] == always["end_time_ms"] - always["start_time_ms"] >= 0
    assert always["end_time_ns"] // 1_000_000 == always["end_time_ms"]


# --- actors --------------------------------------------------------------------------------------------


def test_actors_match_the_state_api(rebuilt: dict[str, pa.Table]) -> None:
    actors = keyed(rebuilt["actors"], "actor_id")
    for expected in state_api_rows("api_v0_actors_limit_1000_detail_1.json"):
        actor = actors[expected["actor_id"]]
        for field in ("class_name", "name", "ray_namespace", "job_id", "state", "node_id", "pid", "is_detached",
                      "placement_group_id", "repr_name", "serialized_runtime_env"):  # fmt: skip
            assert actor[field] == expected[field], f"{expected['class_name']}: {field}"
        assert json.loads(actor["required_resources"]) == expected["required_resources"]
        assert json.loads(actor["label_selector"]) == expected["label_selector"]
        assert actor["num_restarts"] == int(expected["num_restarts"])
        if expected["death_cause"] is None:
            assert actor["death_cause"] is None and actor["error_message"] is None and actor["end_time_ms"] is None
        else:
            assert json.loads(actor["death_cause"]) == expected["death_cause"]
            assert actor["error_message"] == expected["death_cause"]["actor_died_error_context"]["error_message"]
            # The state API gives no times; Ray reports DEAD twice, the first report ends the actor.
            assert actor["start_time_ms"] < actor["end_time_ms"]
        assert "ALIVE" in json.loads(actor["state_times"])


def test_death_causes_read_as_the_state_api_writes_them() -> None:
    cause = {"actorDiedErrorContext": {"ownerId": "AgAAAP8=", "actorId": "not base64!", "neverStarted": False}}
    assert api_death_cause(cause) == {
        "actor_died_error_context": {"owner_id": "02000000ff", "actor_id": "not base64!", "never_started": False}
    }


# --- jobs ----------------------------------------------------------------------------------------------


def assert_jobs_match_api_jobs(jobs: pa.Table) -> None:
    visible = [job for job in jobs.to_pylist() if not job["is_hidden"]]
    expected_jobs = dashboard_answer("api_jobs_.json")
    assert len(visible) == len(expected_jobs)
    for expected in expected_jobs:
        (job,) = [
            j for j in visible if (j["submission_id"], j["job_id"]) == (expected["submission_id"], expected["job_id"])
        ]
        label = expected["submission_id"] or expected["job_id"]
        for field in ("type", "status", "entrypoint", "message", "error_type", "driver_agent_http_address",
                      "driver_exit_code"):  # fmt: skip
            assert job[field] == expected[field], f"{label}: {field}"
        assert (job["start_time_ms"], job["end_time_ms"]) == (expected["start_time"], expected["end_time"]), label
        assert json.loads(job["metadata"]) == expected["metadata"], label
        assert json.loads(job["runtime_env"]) == expected["runtime_env"], label
        driver = expected["driver_info"]
        assert job["driver_pid"] == (driver and int(driver["pid"])), label
        if driver:
            assert job["driver_ip_address"] == driver["node_ip_address"], label
        # /api/jobs/ names no driver node for a driver of its own; the snapshot knows it from the driver's events.
        if expected["driver_node_id"]:
            assert job["driver_node_id"] == expected["driver_node_id"], label


def test_jobs_match_api_jobs(rebuilt: dict[str, pa.Table]) -> None:
    assert_jobs_match_api_jobs(rebuilt["jobs"])
    hidden = [job for job in rebuilt["jobs"].to_pylist() if job["is_hidden"]]
    assert {job["job_id"] for job in hidden} == HIDDEN_JOBS


def test_jobs_come_back_without_the_dashboards_job_list() -> None:
    # A collector that never polled the dashboard: driver events and the export file alone.
    rows = capture_rows(fixture_posts(), RUN1_EXPORT, with_dashboard=False)
    assert not [row for row in rows if row["event_type"] == "DASHBOARD_JOB"]
    assert_jobs_match_api_jobs(rebuild(rows)["jobs"])


def test_a_submission_that_never_started_a_driver_is_a_job(rebuilt: dict[str, pa.Table]) -> None:
    (probe1,) = [job for job in rebuilt["jobs"].to_pylist() if job["submission_id"] == "probe-job-1"]
    assert (probe1["job_id"], probe1["status"], probe1["driver_exit_code"]) == (None, "FAILED", 1)
    assert "ModuleNotFoundError" in probe1["message"]


# --- nodes, workers, placement groups, profile events --------------------------------------------------


def test_nodes_match_the_state_api(rebuilt: dict[str, pa.Table]) -> None:
    (expected,) = state_api_rows("api_v0_nodes_detail_1.json")
    (node,) = rebuilt["nodes"].to_pylist()
    for field in ("node_id", "node_ip", "is_head_node", "state", "state_message", "node_name", "start_time_ms"):
        assert node[field] == expected[field], field
    assert json.loads(node["resources_total"]) == expected["resources_total"]
    assert json.loads(node["labels"]) == expected["labels"]
    assert node["end_time_ms"] is None and expected["end_time_ms"] == 0  # alive: the state API says 0
    assert node["hostname"] == "vm"


def test_workers_match_the_state_api(rebuilt: dict[str, pa.Table]) -> None:
    workers = keyed(rebuilt["workers"], "worker_id")
    expected_workers = state_api_rows("api_v0_workers_limit_100_detail_1.json")
    # Driver 01000000 is the dashboard's own: the GCS sends no events for it, so it has no row.
    assert set(workers) == {w["worker_id"] for w in expected_workers} - {"01000000" + "f" * 48}
    for expected in expected_workers:
        worker = workers.get(expected["worker_id"])
        if worker is None:
            continue
        for field in ("worker_type", "node_id", "pid", "is_alive"):
            assert worker[field] == expected[field], f"{expected['worker_id']}: {field}"
        if expected["worker_type"] == "DRIVER":
            # A driver's row comes from its job's events: its times are the job's, a few ms off the
            # state API's, and its exit is not reported.
            assert abs(worker["start_time_ms"] - expected["start_time_ms"]) < 50
            continue
        for field in ("exit_type", "exit_detail", "worker_launch_time_ms", "worker_launched_time_ms", "start_time_ms"):
            assert worker[field] == expected[field], f"{expected['worker_id']}: {field}"
        assert worker["end_time_ms"] == (expected["end_time_ms"] or None)


def test_placement_groups_match_the_state_api(rebuilt: dict[str, pa.Table]) -> None:
    (expected,) = state_api_rows("api_v0_placement_groups_detail_1.json")
    (group,) = rebuilt["placement_groups"].to_pylist()
    for field in ("placement_group_id", "name", "creator_job_id", "state", "is_detached"):
        assert group[field] == expected[field], field
    assert json.loads(group["bundles"]) == expected["bundles"]
    assert json.loads(group["stats"]) == expected["stats"]
    # This answer was captured without the strategy the collector adds from the GCS log.
    assert group["strategy"] is None


def test_profile_events_match_the_state_apis_profiling_data(
    capture: list[dict[str, Any]], rebuilt: dict[str, pa.Table]
) -> None:
    profile = rebuilt["task_profile_events"].to_pylist()
    entries = sum(
        len(json.loads(row["payload"])["taskProfileEvents"]["profileEvents"]["events"])
        for row in capture
        if row["event_type"] == "TASK_PROFILE_EVENT"
    )
    assert len(profile) == entries
    compared = 0
    for task in state_api_rows("api_v0_tasks_limit_1000_detail_1.json"):
        data = task["profiling_data"]
        if not data or not data["events"]:
            continue
        spans = [
            span
            for span in profile
            if (span["task_id"], span["attempt_number"], span["worker_id"])
            == (task["task_id"], task["attempt_number"], data["component_id"])
        ]
        expected = sorted((e["event_name"], round(e["start_time"], 3), round(e["end_time"], 3)) for e in data["events"])
        got = sorted(
            (s["event_name"], round(s["start_time_ns"] / 1e6, 3), round(s["end_time_ns"] / 1e6, 3)) for s in spans
        )
        assert got == expected, task["name"]
        assert {s["component_type"] for s in spans} == {data["component_type"]}
        assert {json.dumps(json.loads(s["extra_data"]), sort_keys=True) for s in spans} == {
            json.dumps(e["extra_data"], sort_keys=True) for e in data["events"]
        }
        compared += 1
    assert compared > 40


# --- duplicates, the end of a session, the other spelling ----------------------------------------------


def test_duplicated_events_change_nothing(capture: list[dict[str, Any]], rebuilt: dict[str, pa.Table]) -> None:
    twice = rebuild(capture + capture)
    for name, table in rebuilt.items():
        assert twice[name].num_rows == table.num_rows, name
        assert sorted_rows(twice[name]) == sorted_rows(table), name


def without_terminal_reports(rows: Iterable[dict[str, Any]], task_ids: set[str]) -> list[dict[str, Any]]:
    """The capture as if the cluster had died before these tasks' owners reported them finished."""
    return [
        row
        for row in rows
        if not (
            row["event_type"] == "TASK_LIFECYCLE_EVENT"
            and row["task_id"] in task_ids
            and row["state"] in ("FINISHED", "FAILED")
        )
    ]


def test_a_closed_session_says_which_ends_ray_never_reported(capture: list[dict[str, Any]]) -> None:
    squares = {row["task_id"] for row in rebuild(capture)["tasks"].to_pylist() if row["name"] == "square"}
    # probe-job-2 as if its submission had not ended: no final status in the export file or the dashboard.
    rows = [
        row
        for row in without_terminal_reports(capture, squares)
        if not (row["submission_id"] == "probe-job-2" and row["state"] in ("SUCCEEDED", "FAILED"))
    ]
    end = SessionEnd(closed=True, end_ns=1_795_892_730_123_456_789, reason="RayCluster deleted")
    live, closed = rebuild(rows), rebuild(rows, end)

    live_tasks, closed_tasks = (
        keyed(live["tasks"], "task_id", "attempt_number"),
        keyed(closed["tasks"], "task_id", "attempt_number"),
    )
    for key, task in closed_tasks.items():
        before = live_tasks[key]
        if key[0] in squares or (task["type"] == "DRIVER_TASK" and before["state"] == "RUNNING"):
            # Not closed: as the events left it. Closed: still its last reported state, no failure made up,
            # no end time made up, and saying why its end is unknown.
            assert (before["state"], before["end_time_ms"], before["error_type"]) == ("RUNNING", None, None)
            assert not before["end_unknown"] and before["end_unknown_reason"] is None
            assert (task["state"], task["error_type"], task["error_message"]) == ("RUNNING", None, None)
            assert task["end_unknown"] is True
            assert "RayCluster deleted" in task["end_unknown_reason"] and "RUNNING" in task["end_unknown_reason"]
            assert (task["end_time_ms"], task["end_time_ns"], task["duration_ms"]) == (None, None, None)
            assert task["state_times"] == before["state_times"]  # only what Ray reported
            assert {**task, "end_unknown": False, "end_unknown_reason": None} == before
        else:
            assert task == before
            assert task["end_unknown"] is False

    actors = {actor["class_name"]: actor for actor in closed["actors"].to_pylist()}
    for was_alive in ("_AutoscalingCoordinatorActor", "_StatsActor"):
        actor = actors[was_alive]
        assert (actor["state"], actor["end_time_ms"], actor["error_message"]) == ("ALIVE", None, None)
        assert actor["end_unknown"] and "RayCluster deleted" in actor["end_unknown_reason"]
        assert "ALIVE" in actor["end_unknown_reason"] and actor["death_cause"] is None
    assert actors["Counter"]["error_message"] == "The actor is dead because it was killed by `ray.kill`."
    assert not actors["Counter"]["end_unknown"] and actors["Counter"]["end_unknown_reason"] is None

    (node,) = closed["nodes"].to_pylist()
    assert (node["state"], node["end_time_ms"]) == ("DEAD", end.end_ns // 1_000_000)
    assert "RayCluster deleted" in node["state_message"]
    assert [n["state"] for n in live["nodes"].to_pylist()] == ["ALIVE"]

    live_jobs = {job["submission_id"]: job for job in live["jobs"].to_pylist()}
    closed_jobs = {job["submission_id"]: job for job in closed["jobs"].to_pylist()}
    assert live_jobs["probe-job-2"]["status"] == "RUNNING"
    probe2 = closed_jobs["probe-job-2"]
    assert (probe2["status"], probe2["error_type"]) == ("FAILED", CLUSTER_TERMINATED)
    assert "RayCluster deleted" in probe2["message"] and probe2["end_time_ms"] == end.end_ns // 1_000_000
    assert closed_jobs["probe-job-1"] == live_jobs["probe-job-1"]  # it had ended by itself

    # Nothing is left running unexplained, and no failure is made up.
    for task in closed_tasks.values():
        assert task["state"] in ("FINISHED", "FAILED") or (task["end_unknown"] and task["end_unknown_reason"])
    assert sum(task["state"] == "FAILED" for task in closed_tasks.values()) == sum(
        task["state"] == "FAILED" for task in live_tasks.values()
    )
    for actor in actors.values():
        assert actor["state"] == "DEAD" or (actor["end_unknown"] and actor["end_unknown_reason"])
    assert {job["status"] for job in closed["jobs"].to_pylist() if not job["is_hidden"]} <= {"SUCCEEDED", "FAILED"}
    assert not any(worker["is_alive"] for worker in closed["workers"].to_pylist())
    cut = [worker for worker in closed["workers"].to_pylist() if worker["exit_type"] == CLUSTER_TERMINATED]
    assert {worker["pid"] for worker in cut} == {6617, 6620}


def test_the_snake_case_spelling_rebuilds_the_same_tables(
    capture: list[dict[str, Any]], rebuilt: dict[str, pa.Table]
) -> None:
    snake_posts = [[snake_case(event) for event in post] for post in fixture_posts()]
    assert [camelize(event) for post in snake_posts for event in post] == [e for post in fixture_posts() for e in post]
    rows = capture_rows(snake_posts, RUN1_EXPORT)
    again = rebuild(rows)
    for name, table in rebuilt.items():
        assert sorted_rows(again[name]) == sorted_rows(table), name


def test_the_snake_case_capture_rebuilds_the_same_shapes() -> None:
    # Run 5 is another run of the same workload, sent with proto field names.
    tables = rebuild(capture_rows(fixture_posts("run5_all_posts_snake_case.jsonl"), RUN5_EXPORT, with_dashboard=False))
    for name, table in tables.items():
        assert table.schema.equals(SNAPSHOT_TABLES[name], check_metadata=True), name
    tasks = [task for task in tables["tasks"].to_pylist() if task["type"] != "DRIVER_TASK"]
    assert len(tasks) > 30
    assert all(task["name"] and task["func_or_class_name"] and task["state_times"] for task in tasks)
    assert {task["state"] for task in tasks} <= {"FINISHED", "FAILED"}
    assert {"flaky", "crashes_worker", "always_fails", "square"} <= {task["name"] for task in tasks}
    assert all(
        task["worker_pid"] for task in tasks if task["start_time_ms"] is not None and task["type"] == "NORMAL_TASK"
    )
    jobs = tables["jobs"].to_pylist()
    # Run 5 submitted one job, probe-job-5; its status is in the export file it came with.
    assert [(j["submission_id"], j["job_id"], j["status"]) for j in jobs if not j["is_hidden"]] == [
        ("probe-job-5", "02000000", "SUCCEEDED")
    ]
    assert {j["job_id"] for j in jobs if j["is_hidden"]} == {"01000000"}
    assert [node["state"] for node in tables["nodes"].to_pylist()] == ["ALIVE"]
    assert tables["actors"].num_rows >= 4 and tables["workers"].num_rows >= 10
    assert tables["task_profile_events"].num_rows > 100
