"""The events contract: ids as hex, typed columns, and a payload that rebuilds the event exactly."""

from __future__ import annotations

import pytest

from archive.events import (
    MalformedEvent,
    camelize,
    export_event_to_row,
    format_timestamp,
    legacy_event_to_row,
    parse_timestamp_ns,
    ray_event_to_row,
    rebuild_event,
)
from archive.ids import BadId, b64_to_hex, hex_to_b64, is_nil

from .conftest import fixture_path


def test_ids_are_lowercase_hex_of_the_base64_bytes() -> None:
    assert b64_to_hex("AgAAAA==") == "02000000"
    assert b64_to_hex("UNrp6xG6QeM2+mbLNaoaODL3C1scgOnSN77AEg==") == (
        "50dae9eb11ba41e336fa66cb35aa1a3832f70b5b1c80e9d237bec012"
    )
    assert hex_to_b64("02000000") == "AgAAAA=="
    assert is_nil(b64_to_hex("////////////////////////")) and is_nil("") and not is_nil("02000000")
    with pytest.raises(BadId):
        b64_to_hex("not base64!")


def test_timestamps_keep_nanoseconds_and_format_back() -> None:
    ns = parse_timestamp_ns("2026-11-28T19:04:08.341433151Z")
    assert ns == 1795892648341433151
    assert format_timestamp(ns) == "2026-11-28T19:04:08.341433151Z"
    assert format_timestamp(parse_timestamp_ns("2026-11-28T19:04:08.340Z")) == "2026-11-28T19:04:08.340Z"
    assert format_timestamp(parse_timestamp_ns("2026-11-28T19:04:08Z")) == "2026-11-28T19:04:08Z"
    for bad in ("2026-11-28 19:04:08", "yesterday", "2026-11-28T19:04:08.12x4Z", None):
        with pytest.raises(MalformedEvent):
            parse_timestamp_ns(bad)  # type: ignore[arg-type]


def test_every_captured_event_round_trips(camel_posts) -> None:
    events = [event for post in camel_posts for event in post]
    assert len(events) > 300
    for event in events:
        assert rebuild_event(ray_event_to_row(event)) == event


def test_snake_case_events_become_the_camel_case_rows(snake_posts) -> None:
    import json

    events = [event for post in snake_posts for event in post]
    for event in events:
        assert rebuild_event(ray_event_to_row(event)) == camelize(event)
    definition = next(e for e in events if e["event_type"] == "DRIVER_JOB_DEFINITION_EVENT")
    body = json.loads(ray_event_to_row(definition)["payload"])["driverJobDefinitionEvent"]
    # Field names are camelCase now; map keys are user data and keep their underscores.
    assert "driverPid" in body and "driver_pid" not in body
    assert "job_submission_id" in body["config"]["metadata"]


def test_typed_columns_of_a_failed_task_attempt(camel_posts) -> None:
    failed = next(
        event
        for post in camel_posts
        for event in post
        if event["eventType"] == "TASK_LIFECYCLE_EVENT" and "rayErrorInfo" in event["taskLifecycleEvent"]
    )
    row = ray_event_to_row(failed)
    body = failed["taskLifecycleEvent"]
    assert row["task_id"] == b64_to_hex(body["taskId"])
    assert row["task_attempt"] == body["taskAttempt"]
    assert row["job_id"] == "02000000"
    assert row["state"] == body["stateTransitions"][-1]["state"] == "FAILED"
    assert row["worker_id"] == b64_to_hex(body["workerId"])
    assert row["event_id"] == b64_to_hex(failed["eventId"])
    # What the columns hold is not repeated in the payload; the error is.
    assert body["taskId"] not in row["payload"]
    assert "TASK_EXECUTION_EXCEPTION" in row["payload"]


def test_driver_job_carries_its_submission_id(camel_posts) -> None:
    rows = [
        ray_event_to_row(event)
        for post in camel_posts
        for event in post
        if event["eventType"] == "DRIVER_JOB_DEFINITION_EVENT"
    ]
    assert {row["submission_id"] for row in rows} >= {"probe-job-2"}


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ("not an object", "JSON object"),
        ({"eventType": "TASK_DEFINITION_EVENT", "timestamp": "2026-11-28T19:04:08Z"}, "eventId"),
        ({"eventId": "AAAA", "timestamp": "2026-11-28T19:04:08Z"}, "eventType"),
        ({"eventId": "AAAA", "eventType": "X", "timestamp": "noon", "sessionName": "s"}, "RFC 3339"),
        (
            {"eventId": "%%%", "eventType": "X", "timestamp": "2026-11-28T19:04:08Z", "sessionName": "s"},
            "base64",
        ),
    ],
)
def test_malformed_events_are_refused_with_the_reason(event, reason) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        ray_event_to_row(event)


def test_export_submission_job_lines_carry_status_and_submission_id() -> None:
    import json

    path = fixture_path("export_api_files", "run1_with_enable_ray_event", "event_EXPORT_SUBMISSION_JOB.log")
    rows = [export_event_to_row(json.loads(line), "session_x", "ab" * 28) for line in path.read_text().splitlines()]
    assert rows[0]["event_type"] == "EXPORT_SUBMISSION_JOB"
    assert {(row["submission_id"], row["state"]) for row in rows} >= {("probe-job-1", "FAILED")}
    assert all(row["timestamp"] % 1_000_000_000 == 0 and row["timestamp"] > 0 for row in rows)
    first = json.loads(path.read_text().splitlines()[0])
    assert rebuild_event(rows[0]) == first


def test_legacy_event_lines_keep_their_label_and_ids() -> None:
    import json

    path = fixture_path("legacy_events", "run1", "event_RAYLET.log")
    line = json.loads(path.read_text().splitlines()[0])
    row = legacy_event_to_row(line, "session_x")
    assert row["event_type"] == "LEGACY_EVENT"
    assert row["state"] == "RAY_WORKER_FAILURE"
    assert row["job_id"] == "02000000"
    assert rebuild_event(row) == line


@pytest.mark.parametrize(
    "spelling",
    ["2026-11-28T19:04:24.004150000Z", "2026-11-28T19:04:24.1Z", "2026-11-28T19:04:24.000Z", "2026-11-28T19:04:24Z"],
)
def test_any_spelling_of_a_timestamp_rebuilds_exactly(camel_posts, spelling: str) -> None:
    event = {**camel_posts[0][0], "timestamp": spelling}
    row = ray_event_to_row(event)
    assert row["timestamp"] == parse_timestamp_ns(spelling)
    assert rebuild_event(row) == event
