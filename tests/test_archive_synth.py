"""The synthetic archive generator (bench/archive_synth.py): what it writes must read like a real archive."""

from __future__ import annotations

import base64
import functools
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from archive import documents, layout
from archive.events import (
    body_key_for,
    export_event_to_row,
    format_timestamp,
    parse_timestamp_ns,
    ray_event_to_row,
    rebuild_event,
)
from archive.ids import b64_to_hex
from archive.logs import rebuild_file
from archive.parquet import parquet_to_table, table_rows
from archive.schema import EVENTS, LOGS, METRICS
from archive.storage import Storage, open_storage
from bench.archive_synth import Rfc3339, SessionStats, b64_ids, hex_ids, main, write_catalog, write_session

from .conftest import fixture_posts

START_MS = 1_795_892_637_151  # the fixture session's start
REF = layout.SessionRef("ml-research", "synth-4k-x7k2q", "session_2026-11-28_19-03-57_108652_5250")
TASKS = 4000
TASK_TYPES = {"TASK_DEFINITION_EVENT", "ACTOR_TASK_DEFINITION_EVENT", "TASK_LIFECYCLE_EVENT", "TASK_PROFILE_EVENT"}
ALL_TYPES = TASK_TYPES | {
    "ACTOR_DEFINITION_EVENT",
    "ACTOR_LIFECYCLE_EVENT",
    "DRIVER_JOB_DEFINITION_EVENT",
    "DRIVER_JOB_LIFECYCLE_EVENT",
    "NODE_DEFINITION_EVENT",
    "NODE_LIFECYCLE_EVENT",
    "WORKER_DEFINITION_EVENT",
    "WORKER_LIFECYCLE_EVENT",
    "EXPORT_SUBMISSION_JOB",
    "DASHBOARD_JOB",
    "DASHBOARD_PLACEMENT_GROUP",
}


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Storage, SessionStats]:
    storage = open_storage(str(tmp_path_factory.mktemp("archive")))
    stats = write_session(
        storage,
        REF,
        TASKS,
        seed=7,
        nodes=4,
        start_ms=START_MS,
        duration_s=150,
        rows_per_part=8000,
        logs=True,
        metrics=True,
    )
    return storage, stats


def _parts(storage: Storage, kind: str) -> dict[str, pa.Table]:
    return {info.key: parquet_to_table(storage.get(info.key)) for info in storage.list(f"{kind}/")}


@pytest.fixture(scope="module")
def rows(session: tuple[Storage, SessionStats]) -> list[dict[str, Any]]:
    return [row for table in _parts(session[0], "events").values() for row in table_rows(table)]


@pytest.fixture(scope="module")
def events(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(row, the Ray event it rebuilds to) for the rows of Ray's event stream."""
    return [(row, rebuild_event(row)) for row in rows if row["event_type"] in _fixture_shapes()[0]]


@functools.cache
def _fixture_shapes() -> tuple[dict[str, set[str]], dict[str, list[set[str]]]]:
    """Per event type of the real capture: its top-level keys, and every set of body keys it has."""
    top: dict[str, set[str]] = {}
    bodies: dict[str, list[set[str]]] = defaultdict(list)
    for post in fixture_posts():
        for event in post:
            top[event["eventType"]] = set(event)
            keys = set(event[body_key_for(event["eventType"])])
            if keys not in bodies[event["eventType"]]:
                bodies[event["eventType"]].append(keys)
    return top, bodies


def _attempts(events: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    found: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row, event in events:
        if row["event_type"] in TASK_TYPES:
            found[row["task_id"], row["task_attempt"]].append(event)
    return found


def _definition(group: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [e for e in group if e["eventType"] in ("TASK_DEFINITION_EVENT", "ACTOR_TASK_DEFINITION_EVENT")]
    return found[body_key_for(found["eventType"])]


def _transitions(group: list[dict[str, Any]]) -> dict[str, int]:
    found = {}
    for event in group:
        for transition in event.get("taskLifecycleEvent", {}).get("stateTransitions", []):
            found[transition["state"]] = parse_timestamp_ns(transition["timestamp"])
    return found


def test_encoders_spell_ids_and_timestamps_as_ray_and_the_archive_do() -> None:
    rng = np.random.default_rng(0)
    for size in (4, 16, 18, 24, 28):
        raw = rng.integers(0, 256, (50, size), dtype=np.uint8)
        assert b64_ids(raw).to_pylist() == [base64.b64encode(bytes(r)).decode() for r in raw]
        assert hex_ids(raw).to_pylist() == [bytes(r).hex() for r in raw]
    stamps = rng.integers(START_MS * 1_000_000, (START_MS + 86_400_000) * 1_000_000, 200) | 1
    assert Rfc3339(int(stamps.min()), int(stamps.max()))(stamps).to_pylist() == [
        format_timestamp(int(t)) for t in stamps
    ]


def test_parts_are_keyed_and_typed_as_the_collector_leaves_them(session: tuple[Storage, SessionStats]) -> None:
    storage, stats = session
    parts = _parts(storage, "events")
    assert len(parts) == stats.events.parts > 4
    nodes = Counter()
    for key, table in parts.items():
        parsed = layout.parse_data_key(key)
        assert parsed is not None and parsed.kind == "events" and parsed.ref == REF and not parsed.compacted
        nodes[parsed.node] += 1
        assert table.schema.equals(EVENTS, check_metadata=False)
        assert 0 < table.num_rows < 2 * 8000
    markers = {info.key.rsplit("/", 1)[1][: -len(".json")] for info in storage.list(f"sessions/{REF.path}/nodes/")}
    assert set(nodes) == markers and len(markers) == 4
    assert max(nodes.values()) > 1  # the head's owner events fill several parts
    assert sum(table.num_rows for table in parts.values()) == stats.events.rows


def test_every_row_rebuilds_to_an_event_shaped_like_the_capture(rows: list[dict[str, Any]]) -> None:
    top, bodies = _fixture_shapes()
    for row in rows:
        event = rebuild_event(row)
        if row["event_type"].startswith("DASHBOARD_"):
            assert isinstance(event, dict) and row["source_type"] == "DASHBOARD"
            continue
        if row["event_type"] == "EXPORT_SUBMISSION_JOB":
            assert export_event_to_row(event, row["session_name"], row["source_node_id"]) == row
            continue
        assert set(event) == top[row["event_type"]], row["event_type"]
        body = event[body_key_for(row["event_type"])]
        assert set(body) in bodies[row["event_type"]], (row["event_type"], sorted(body))
        # The row is exactly what the collector makes of the event: same columns, same payload bytes.
        assert ray_event_to_row(event) == row
        for key, value in body.items():
            if key.endswith("Id") and isinstance(value, str) and value:
                b64_to_hex(value)
        for transition in body.get("stateTransitions", []):
            assert START_MS * 10**6 <= parse_timestamp_ns(transition["timestamp"]) <= row["timestamp"] + 10**9


def test_a_tasks_events_agree_on_its_ids(events: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    workers = {}
    for _, event in events:
        if event["eventType"] == "WORKER_DEFINITION_EVENT":
            body = event["workerDefinitionEvent"]
            workers[body["workerId"]] = (body["pid"], body["nodeId"])
    attempts = _attempts(events)
    assert len({task for task, _ in attempts}) > TASKS
    for (task, _), group in attempts.items():
        definition = _definition(group)
        assert {b64_to_hex(e[body_key_for(e["eventType"])]["jobId"]) for e in group} == {task[-8:]}
        if "actorId" in definition:
            assert b64_to_hex(definition["actorId"]) == task[16:]
        leased = [e for e in group if e.get("taskLifecycleEvent", {}).get("workerId")]
        running = [e for e in group if e.get("taskLifecycleEvent", {}).get("workerPid")]
        for event in leased:
            worker = event["taskLifecycleEvent"]["workerId"]
            pid, node = workers[worker]
            assert event["taskLifecycleEvent"]["nodeId"] == node
            for ran in running:  # the worker reports RUNNING from its own node, with its pid
                assert (ran["taskLifecycleEvent"]["workerPid"], ran["nodeId"]) == (pid, node)
            for profile in (e["taskProfileEvents"]["profileEvents"] for e in group if "taskProfileEvents" in e):
                assert profile["componentId"] == worker
                extras = [json.loads(entry["extraData"]) for entry in profile["events"]]
                assert all(extra.get("task_id", task) == task for extra in extras)
            for info in (
                e["taskLifecycleEvent"]["taskLogInfo"]
                for e in group
                if "taskLogInfo" in e.get("taskLifecycleEvent", {})
            ):
                assert f"worker-{b64_to_hex(worker)}-" in info["stdoutFile"] and info["stdoutFile"].endswith(
                    f"-{pid}.out"
                )
        times = _transitions(group)
        order = [
            times[state]
            for state in ("PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER", "RUNNING")
            if state in times
        ]
        assert order == sorted(order)
        for final in ("FINISHED", "FAILED"):
            if final in times and "RUNNING" in times:
                assert times[final] > times["RUNNING"]


def test_types_states_failures_retries_and_functions_mix_as_in_a_real_session(
    session: tuple[Storage, SessionStats],
    events: list[tuple[dict[str, Any], dict[str, Any]]],
    rows: list[dict[str, Any]],
) -> None:
    assert {row["event_type"] for row in rows} >= ALL_TYPES
    attempts = _attempts(events)
    finals: dict[str, tuple[int, str, str | None]] = {}  # task -> (last attempt, state, error type)
    names = Counter()
    for (task, attempt), group in attempts.items():
        definition = _definition(group)
        if definition.get("taskType") in ("DRIVER_TASK", "ACTOR_CREATION_TASK"):
            continue
        names[definition.get("taskName") or definition.get("actorTaskName")] += 1
        ended = [
            e["taskLifecycleEvent"]
            for e in group
            if e.get("taskLifecycleEvent", {}).get("stateTransitions")
            and e["taskLifecycleEvent"]["stateTransitions"][-1]["state"] in ("FINISHED", "FAILED")
        ]
        assert len(ended) == 1, group
        state = ended[0]["stateTransitions"][-1]["state"]
        error = ended[0].get("rayErrorInfo", {}).get("errorType")
        if attempt > 0:
            previous = _transitions(attempts[task, attempt - 1])
            assert "FAILED" in previous and _transitions(group)["PENDING_ARGS_AVAIL"] >= previous["FAILED"]
        if task not in finals or finals[task][0] < attempt:
            finals[task] = (attempt, state, error)
    failed = [error for _, state, error in finals.values() if state == "FAILED"]
    assert len(finals) == TASKS
    assert 0.003 < len(failed) / TASKS < 0.03
    errors = Counter(
        e["taskLifecycleEvent"]["rayErrorInfo"]["errorType"]
        for group in attempts.values()
        for e in group
        if "rayErrorInfo" in e.get("taskLifecycleEvent", {})
    )
    assert errors["TASK_EXECUTION_EXCEPTION"] and errors["WORKER_DIED"] + errors["OUT_OF_MEMORY"]
    assert any(attempt > 0 for _, attempt in attempts)
    task_rows = sum(1 for row in rows if row["event_type"] in TASK_TYPES)
    assert 5 < task_rows / len(attempts) < 8
    assert len(names) >= 25
    counts = sorted(names.values())
    assert counts[-1] > 3 * counts[len(counts) // 2]  # skewed: a few functions make most of the tasks
    stats = session[1]
    assert stats.final_states["FINISHED"] == sum(1 for _, state, _ in finals.values() if state == "FINISHED")


def test_session_documents_describe_the_session(
    session: tuple[Storage, SessionStats], rows: list[dict[str, Any]]
) -> None:
    storage, _ = session
    manifest = documents.decode(storage.get(layout.manifest_key(REF)), documents.Manifest)
    assert (manifest.namespace, manifest.cluster, manifest.session) == (REF.namespace, REF.cluster, REF.session)
    assert manifest.start_time_ms == START_MS and manifest.owner.kind == "RayJob"
    assert manifest.kubernetes.queue == manifest.labels["kueue.x-k8s.io/queue-name"]
    closed = documents.decode(storage.get(layout.closed_key(REF)), documents.Closed)
    assert closed.closed_by == manifest.head_node
    per_node = Counter()
    for key, table in _parts(storage, "events").items():
        per_node[key.split("/")[4]] += table.num_rows
    for info in storage.list(f"sessions/{REF.path}/nodes/"):
        marker = documents.decode(storage.get(info.key), documents.NodeMarker)
        assert marker.final and marker.events_uploaded == per_node[marker.node]
        assert marker.role == ("head" if marker.node == manifest.head_node else "worker")
    stamps = [row["timestamp"] for row in rows]
    assert min(stamps) >= START_MS * 10**6 and max(stamps) <= closed.closed_at_ms * 10**6
    assert (max(stamps) - min(stamps)) / 10**9 > 150  # spread over the session, not bunched


def test_worker_logs_hold_each_tasks_output_where_its_log_info_points(
    session: tuple[Storage, SessionStats], events: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    storage, _ = session
    logs = pa.concat_tables(_parts(storage, "logs").values())
    assert logs.schema.equals(LOGS, check_metadata=False)
    files = {}
    for file_id in pc.unique(logs["file_id"]).to_pylist():
        rows = logs.filter(pc.equal(logs["file_id"], file_id))
        files[rows["file"][0].as_py()] = rebuild_file(rows)
    assert any(name.startswith("logs/job-driver-") for name in files)
    checked = 0
    for (_, _), group in _attempts(events).items():
        infos = [
            e["taskLifecycleEvent"]["taskLogInfo"] for e in group if "taskLogInfo" in e.get("taskLifecycleEvent", {})
        ]
        if not infos:
            continue
        definition = _definition(group)
        marker = f":task_name:{definition['taskName']}\n".encode()
        for stream in ("stdout", "stderr"):
            data = files["logs/" + infos[0][f"{stream}File"].rsplit("/", 1)[1]]
            start, end = int(infos[0][f"{stream}Start"]), int(infos[0][f"{stream}End"])
            assert data[:start].endswith(marker) and b":task_name:" not in data[start:end]
            assert end == start or data[end - 1 : end] == b"\n"
        checked += 1
    assert checked > TASKS * 0.8


def test_metrics_are_a_real_scrape_of_every_node(session: tuple[Storage, SessionStats]) -> None:
    storage, stats = session
    metrics = pa.concat_tables(_parts(storage, "metrics").values())
    assert metrics.schema.equals(METRICS, check_metadata=False) and metrics.num_rows == stats.metrics.rows
    assert len(pc.unique(metrics["node"])) == 4
    cpu = metrics.filter(pc.equal(metrics["name"], "ray_node_cpu_utilization"))
    labels = [json.loads(text) for text in cpu["labels"].to_pylist()]
    assert {label["SessionName"] for label in labels} == {REF.session}
    assert {label["IsHeadNode"] for label in labels} == {"true", "false"}


def test_the_same_seed_gives_the_same_archive(tmp_path: Path) -> None:
    found = []
    for name in ("a", "b"):
        storage = open_storage(str(tmp_path / name))
        write_session(storage, REF, 300, seed=3, start_ms=START_MS, duration_s=60)
        found.append({info.key: parquet_to_table(storage.get(info.key)) for info in storage.list("events/")})
    assert found[0].keys() == found[1].keys()
    assert all(found[0][key].equals(found[1][key]) for key in found[0])


def test_a_catalog_has_the_variety_of_a_real_one(tmp_path: Path) -> None:
    now_ms = START_MS + 40 * 86_400_000
    storage = open_storage(str(tmp_path))
    stats = write_catalog(storage, 500, seed=3, now_ms=now_ms)
    sessions: dict[str, dict[str, Any]] = defaultdict(lambda: {"markers": []})
    for info in storage.list("sessions/"):
        prefix, name = info.key.rsplit("/", 1)
        data = storage.get(info.key)
        if prefix.endswith("/nodes"):
            sessions[prefix[: -len("/nodes")]]["markers"].append(documents.decode(data, documents.NodeMarker))
        elif name == "manifest.json":
            sessions[prefix]["manifest"] = documents.decode(data, documents.Manifest)
        else:
            sessions[prefix]["closed"] = documents.decode(data, documents.Closed)
    assert len(sessions) == stats.sessions == 500
    manifests = [entry["manifest"] for entry in sessions.values()]
    assert all(1 <= len(entry["markers"]) <= 4 for entry in sessions.values())
    assert len({m.namespace for m in manifests}) >= 5
    assert {m.owner.kind for m in manifests} == {"RayJob", "RayCluster", "RayService"}
    queues = Counter(m.kubernetes.queue for m in manifests)
    assert None in queues and len(queues) >= 4
    assert all(m.labels.get("kueue.x-k8s.io/queue-name") == m.kubernetes.queue for m in manifests)
    assert len({m.kubernetes.priority_class for m in manifests}) >= 3
    assert len({m.ray_version for m in manifests}) >= 3
    assert all(m.labels["team"] == m.namespace and "priority" in m.labels for m in manifests)
    assert all(m.kubernetes.rayjob == m.owner.name for m in manifests if m.owner.kind == "RayJob")
    assert all(now_ms - 31 * 86_400_000 <= m.start_time_ms <= now_ms for m in manifests)
    status = Counter()
    for entry in sessions.values():
        heartbeat = max(marker.last_heartbeat_ms for marker in entry["markers"])
        if "closed" in entry:
            status["closed"] += 1
            assert all(marker.final for marker in entry["markers"])
        elif heartbeat >= now_ms - 60_000:
            status["running"] += 1
        else:
            status["incomplete"] += 1
            assert heartbeat < now_ms - 3_600_000 and not any(marker.final for marker in entry["markers"])
    assert status == Counter(stats.status)
    assert status["closed"] > 0.8 * 500 and status["running"] > 0 and status["incomplete"] > 0
    restarted = [entry for entry in sessions.values() if "closed" in entry and entry["closed"].reason.startswith("Ray")]
    clusters = Counter((m.namespace, m.cluster) for m in manifests)
    assert restarted and max(clusters.values()) > 1  # a shared RayCluster's sessions, one per Ray restart


def test_the_command_writes_a_session_and_a_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--out", str(tmp_path), "--tasks", "300", "--sessions", "40", "--seed", "5"])
    printed = capsys.readouterr()
    assert "session: 300 tasks" in printed.out and "catalog: 40 sessions" in printed.out
    assert "tasks: 300/300 simulated" in printed.err
    storage = open_storage(str(tmp_path))
    manifests = [info.key for info in storage.list("sessions/") if info.key.endswith("/manifest.json")]
    assert len(manifests) == 41
    assert any(info.key.startswith("events/bench/synth-300-") for info in storage.list("events/"))
    assert msgspec.json.decode(storage.get(manifests[0]))["ray_version"]
