"""What the history answers is what Ray said, and no more: on events built from the real Ray 2.60 capture.

- A task's log info sent in pieces is merged field by field.
- Every JSON-typed snapshot column is answered as JSON (an object where Ray answers one).
- The timeline keeps each span's extra data (a failure's traceback) in `args`, as Ray's does.
- Ends Ray never reported (it drops task events under load) are shown as unknown, not as failures, and the
  session's summary says how many entities the source left incomplete.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from archive.parquet import rows_to_table
from archive.schema import METRICS, SNAPSHOT_TABLES
from archive.storage import open_storage
from historyserver import queries
from historyserver.app import create_app
from historyserver.reconstruct import SessionEnd
from historyserver.server import HistoryServer, ServerSettings

from .conftest import fixture_bytes, fixture_posts
from .test_reconstruct import RUN1_EXPORT, capture_rows, keyed, rebuild
from .uiserver import captured_archive

SESSION = "session_2026-11-28_19-03-57_108652_5250"
BASE = f"/api/v1/sessions/default/local/{SESSION}"
END = SessionEnd(closed=True, end_ns=1_795_892_730_123_456_789, reason="RayCluster deleted")

TABLES = {table.name: table for table in (queries.TASKS, queries.ACTORS, queries.JOBS, queries.NODES,
                                          queries.WORKERS, queries.PLACEMENT_GROUPS)}  # fmt: skip
# JSON text Ray itself answers as a string (its ActorState has serialized_runtime_env: "{}").
JSON_AS_TEXT = {("tasks", "serialized_runtime_env"), ("actors", "serialized_runtime_env")}


def b64_task_id(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def rfc3339(ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(ns // 1_000_000_000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}Z"


def event_ns(event: dict[str, Any]) -> int:
    seconds, fraction = event["timestamp"].rstrip("Z").split(".")
    moment = datetime.datetime.fromisoformat(seconds).replace(tzinfo=datetime.UTC)
    return int(moment.timestamp()) * 1_000_000_000 + int(fraction.ljust(9, "0"))


def new_event_id(seed: str) -> str:
    return base64.b64encode(seed.encode().ljust(28, b"\0")[:28]).decode()


# --- task_log_info in pieces ---------------------------------------------------------------------------


def test_log_info_sent_in_pieces_is_merged_field_by_field() -> None:
    posts = fixture_posts()
    whole = keyed(rebuild(capture_rows(posts, RUN1_EXPORT))["tasks"], "task_id", "attempt_number")
    # A real event that carries an attempt's log info and no transition.
    at, index, original = next(
        (at, index, event)
        for at, post in enumerate(posts)
        for index, event in enumerate(post)
        if event.get("taskLifecycleEvent", {}).get("taskLogInfo")
        and not event["taskLifecycleEvent"].get("stateTransitions")
    )
    body = original["taskLifecycleEvent"]
    info = body["taskLogInfo"]
    task_id = base64.b64decode(body["taskId"]).hex()
    expected = whole[task_id, body.get("taskAttempt", 0)]["task_log_info"]
    assert json.loads(expected)["stdout_end"] is not None

    def piece(seed: str, ns: int, fields: dict[str, Any]) -> dict[str, Any]:
        event = copy.deepcopy(original)
        event["eventId"], event["timestamp"] = new_event_id(seed), rfc3339(ns)
        event["taskLifecycleEvent"]["taskLogInfo"] = fields
        return event

    files = {key: info[key] for key in ("stdoutFile", "stderrFile")}
    starts = {key: info[key] for key in ("stdoutStart", "stderrStart")}
    ends = {key: info[key] for key in ("stdoutEnd", "stderrEnd")}
    ns = event_ns(original)
    # The files and start offsets first; the end offsets a moment later; and, earlier still, a report whose
    # ends were the starts (an older value of those fields, which must lose).
    stale = piece("stale", ns - 1_000_000, {**files, **starts, "stdoutEnd": info["stdoutStart"],
                                            "stderrEnd": info["stderrStart"]})  # fmt: skip
    first = piece("first", ns, {**files, **starts})
    later = piece("later", ns + 1_000_000, ends)
    split = copy.deepcopy(posts)
    # Arrival order is not time order: the later piece comes in an earlier POST.
    split[at][index : index + 1] = [first, stale]
    split[0].append(later)
    tasks = keyed(rebuild(capture_rows(split, RUN1_EXPORT))["tasks"], "task_id", "attempt_number")
    assert tasks[task_id, body.get("taskAttempt", 0)]["task_log_info"] == expected
    # Every other attempt is as before.
    assert {key: row for key, row in tasks.items() if key[0] != task_id} == {
        key: row for key, row in whole.items() if key[0] != task_id
    }


# --- the API over the capture's archive ----------------------------------------------------------------


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return captured_archive(tmp_path_factory.mktemp("fidelity"))


@pytest.fixture(scope="module")
def client(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = ServerSettings(cache_dir=tmp_path_factory.mktemp("cache"), refresh_interval=3600)
    with TestClient(create_app(HistoryServer(open_storage(str(archive)), settings))) as test_client:
        yield test_client


def live_rows(name: str) -> list[dict[str, Any]]:
    answer = json.loads(fixture_bytes("dashboard_api", name).decode())
    return answer if isinstance(answer, list) else answer["data"]["result"]["result"]


# Ray's live answers, for the columns it shares with ours.
LIVE_ANSWERS = {
    "tasks": "api_v0_tasks_limit_1000_detail_1.json", "actors": "api_v0_actors_limit_1000_detail_1.json",
    "nodes": "api_v0_nodes_detail_1.json", "placement_groups": "api_v0_placement_groups_detail_1.json",
    "jobs": "api_jobs_.json", "workers": "api_v0_workers_limit_100_detail_1.json",
}  # fmt: skip


def test_every_json_column_is_answered_as_json_where_ray_answers_json(client: TestClient) -> None:
    stored = rebuild(capture_rows(fixture_posts(), RUN1_EXPORT))
    for name, table in TABLES.items():
        schema = SNAPSHOT_TABLES[name]
        # A column holds JSON when its stored texts are objects or arrays.
        json_like = {
            field.name
            for field in schema
            if field.type == pa.string()
            and (texts := [t for t in stored[name].column(field.name).to_pylist() if t])
            and all(t[0] in "{[" for t in texts)
        }
        assert json_like - {column for table_name, column in JSON_AS_TEXT if table_name == name} == set(
            table.json_columns
        ), name
        items = client.get(f"{BASE}/{name}", params={"limit": 1000, "detail": "true"}).json()["items"]
        assert items, name
        for column in table.json_columns:
            values = [item[column] for item in items if item[column] is not None]
            assert values and all(isinstance(value, dict | list) for value in values), (name, column)
        # Where Ray answers a column, ours has its JSON type: an object, an array or text.
        live = live_rows(LIVE_ANSWERS[name])
        for column in schema.names:
            ray_types = {type(row[column]) for row in live if row.get(column) is not None}
            our_types = {type(item[column]) for item in items if item.get(column) is not None}
            if ray_types & {dict, list} and our_types:
                assert our_types == ray_types, (name, column, our_types, ray_types)


def test_the_timeline_keeps_each_spans_extra_data_as_rays_does(client: TestClient) -> None:
    trace = client.get(f"{BASE}/timeline").json()
    # Ray's live timeline of another run of the workload: a failed attempt's span carries its exception.
    ray_trace = json.loads(fixture_bytes("dashboard_api", "run6_tasks_timeline_first40.json").decode())
    (ray_span,) = [span for span in ray_trace if "traceback" in span["args"]]
    failures = {span["args"]["func_or_class_name"]: span for span in trace if "traceback" in span["args"]}
    assert set(failures) == {"always_fails", "Counter.boom", "oops"}
    for span in failures.values():
        assert span["name"] == ray_span["name"] == "task:execute"
        assert set(ray_span["args"]) <= set(span["args"])  # Ray's keys, and the task's name besides
        assert span["args"]["traceback"].startswith("Traceback (most recent call last):")
    always_fails = failures["always_fails"]["args"]
    assert (always_fails["type"], always_fails["value"], always_fails["actor_id"]) == (
        "<class 'ValueError'>", "intentional failure from always_fails", None)  # fmt: skip
    assert failures["Counter.boom"]["args"]["actor_id"] is not None
    # The traceback is the failed attempt's error.
    task = client.get(f"{BASE}/tasks/{always_fails['task_id']}").json()["attempts"][always_fails["attempt_number"]]
    assert task["state"] == "FAILED" and "intentional failure from always_fails" in task["error_message"]
    # Spans without extra data have the task's keys only, as Ray's have.
    plain = next(span for span in trace if span["name"] == "task:store_outputs")
    assert set(plain["args"]) == {"task_id", "attempt_number", "job_id", "name", "func_or_class_name", "actor_id"}


def test_the_session_summary_says_what_the_source_left_incomplete(client: TestClient) -> None:
    summary = client.get(BASE).json()["summary"]
    incomplete = summary["incomplete"]
    assert incomplete["ray_task_events_dropped"] == {"PROFILE_EVENT": 0, "STATUS_EVENT": 0}
    assert incomplete["actors_end_unknown"] == summary["actors_by_state"].get("ALIVE", 0) == 2
    actors = client.get(f"{BASE}/actors", params={"state": "ALIVE"}).json()["items"]
    assert all(actor["end_unknown"] and actor["end_unknown_reason"] for actor in actors)


# --- ends Ray never reported ---------------------------------------------------------------------------


def burst_losses(rows: list[dict[str, Any]], lost_ends: set[str], lost_definitions: set[str]) -> list[dict[str, Any]]:
    """The capture as if Ray's buffers had overflowed: these tasks' FINISHED/FAILED and definitions never sent."""
    return [
        row
        for row in rows
        if not (row["task_id"] in lost_ends and row["event_type"] == "TASK_LIFECYCLE_EVENT"
                and row["state"] in ("FINISHED", "FAILED"))
        and not (row["task_id"] in lost_definitions and row["event_type"] == "TASK_DEFINITION_EVENT")
    ]  # fmt: skip


def test_ends_ray_never_reported_are_unknown_not_failures() -> None:
    rows = capture_rows(fixture_posts(), RUN1_EXPORT)
    whole = rebuild(rows, END)["tasks"].to_pylist()
    by_name = {task["name"]: task for task in whole if task["type"] == "NORMAL_TASK"}
    # A task that finished, one that failed, and one whose definition is lost as well.
    lost_ends = {by_name["square"]["task_id"], by_name["always_fails"]["task_id"]}
    lost_definitions = {next(t["task_id"] for t in whole if t["name"] == "square" and t["task_id"] not in lost_ends)}
    lost_ends |= lost_definitions
    tables = rebuild(burst_losses(rows, lost_ends, lost_definitions), END)
    before, after = (
        keyed(pa.Table.from_pylist(whole), "task_id", "attempt_number"),
        keyed(tables["tasks"], "task_id", "attempt_number"),
    )
    for key, task in after.items():
        if key[0] not in lost_ends:
            continue
        # Its last reported state (it ran), no end and no error made up, and why the end is unknown.
        assert task["state"] == "RUNNING" and task["end_unknown"], key
        assert (task["end_time_ms"], task["duration_ms"], task["error_type"]) == (None, None, None)
        assert "no end" in task["end_unknown_reason"] and "RayCluster deleted" in task["end_unknown_reason"]
        assert "driver exited" in task["end_unknown_reason"]  # its job had ended before the cluster did
        assert task["start_time_ms"] == before[key]["start_time_ms"]
    assert {key[0] for key, task in after.items() if task["type"] is None} == lost_definitions

    # Counts, summaries and failure lists: nothing more failed than Ray reported failing.
    con = duckdb.connect()
    for name, table in tables.items():
        con.register(name, table)
    con.register("metrics", rows_to_table([], METRICS))
    states = queries.state_counts(con, queries.TASKS)
    was = sum(t["state"] == "FAILED" and t["type"] != "DRIVER_TASK" for t in whole)
    assert states["FAILED"] == was - 1  # always_fails' failure was never reported
    assert states["RUNNING"] == len(lost_ends) == 3
    assert sum(row["failed"] for row in queries.failure_counts(con, limit=100)) == was - 1
    assert sum(row["failed"] for row in queries.task_summary(con, None)) == was - 1
    assert queries.incomplete_counts(con) == {
        "tasks_end_unknown": 3, "tasks_without_definition": 1, "actors_end_unknown": 2, "actors_without_definition": 0,
    }  # fmt: skip
    assert queries.dropped_task_events(con) is None  # no sample of Ray's counter


def test_rays_dropped_event_counter_is_summed_over_its_series() -> None:
    def sample(seconds: int, kind: str, value: float, node: str = "head") -> dict[str, Any]:
        return {"timestamp": seconds * 1_000_000_000, "node": node, "node_id": None, "target": "head:8080",
                "name": "ray_gcs_task_manager_task_events_dropped", "type": "gauge",
                "labels": json.dumps({"Component": "gcs_server", "Type": kind}), "value": value}  # fmt: skip

    con = duckdb.connect()
    # A running total: its greatest value counts, not the sum of its samples.
    samples = [sample(1, "STATUS_EVENT", 10), sample(2, "STATUS_EVENT", 9_610), sample(2, "PROFILE_EVENT", 3)]
    con.register("metrics", rows_to_table(samples, METRICS))
    assert queries.dropped_task_events(con) == {"PROFILE_EVENT": 3, "STATUS_EVENT": 9_610}
