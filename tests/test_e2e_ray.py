"""End to end with real Ray and real SeaweedFS: the archive holds everything the state API listed."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa
import pytest

from archive import documents, layout
from archive.parquet import parquet_to_table

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def events(ray_run) -> duckdb.DuckDBPyRelation:
    tables = [parquet_to_table(ray_run.storage.get(info.key)) for info in ray_run.storage.list("events/")]
    con = duckdb.connect()
    con.register("events", pa.concat_tables(tables))
    return con


def test_the_collector_flushed_and_exited_cleanly_on_sigterm(ray_run) -> None:
    assert ray_run.collector_exit_code == 0, ray_run.collector_log.read_text()[-3000:]
    ref = layout.SessionRef("tests", "e2e", ray_run.session_name)
    manifest = documents.decode(ray_run.storage.get(layout.manifest_key(ref)), documents.Manifest)
    assert manifest.ray_version and manifest.ray_version.startswith("2.")
    closed = documents.decode(ray_run.storage.get(layout.closed_key(ref)), documents.Closed)
    assert closed.closed_at_ms > manifest.start_time_ms
    markers = [info.key for info in ray_run.storage.list(f"sessions/{ref.path}/nodes/")]
    assert len(markers) == 1
    assert documents.decode(ray_run.storage.get(markers[0]), documents.NodeMarker).final
    # Every object carries the tags a lifecycle rule can select on.
    part = next(iter(ray_run.storage.list("events/")))
    assert ray_run.storage.get_tags(part.key) == {"kind": "events", "namespace": "tests", "cluster": "e2e"}


def test_every_task_attempt_the_state_api_listed_is_archived(ray_run, events) -> None:
    listed = {(task["task_id"], task["attempt_number"]) for task in ray_run.state["tasks"]}
    assert len(listed) >= 20
    archived = set(
        events.execute("SELECT DISTINCT task_id, task_attempt FROM events WHERE task_id IS NOT NULL").fetchall()
    )
    assert listed - archived == set()


def test_final_task_states_and_errors_match_the_state_api(ray_run, events) -> None:
    finals = dict(
        ((task_id, attempt), state)
        for task_id, attempt, state in events.execute(
            """SELECT task_id, task_attempt, arg_max(state, timestamp) FROM events
               WHERE event_type = 'TASK_LIFECYCLE_EVENT' AND state IN ('FINISHED', 'FAILED')
               GROUP BY ALL"""
        ).fetchall()
    )
    terminal = [task for task in ray_run.state["tasks"] if task["state"] in ("FINISHED", "FAILED")]
    assert terminal
    for task in terminal:
        assert finals.get((task["task_id"], task["attempt_number"])) == task["state"], task["name"]
    failed_names = {task["name"] for task in terminal if task["state"] == "FAILED"}
    assert {"boom", "flaky", "crash"} <= failed_names
    # The retried task failed once and then succeeded: both attempts are there.
    flaky = {task["attempt_number"]: task["state"] for task in terminal if task["name"] == "flaky"}
    assert len(flaky) == 2 and "FINISHED" in flaky.values() and "FAILED" in flaky.values()


def test_every_actor_job_and_node_is_archived_with_the_same_hex_ids(ray_run, events) -> None:
    actors = {
        row[0] for row in events.execute("SELECT DISTINCT actor_id FROM events WHERE actor_id IS NOT NULL").fetchall()
    }
    assert {actor["actor_id"] for actor in ray_run.state["actors"]} <= actors
    jobs = {row[0] for row in events.execute(
        "SELECT DISTINCT job_id FROM events WHERE event_type LIKE 'DRIVER_JOB_%'").fetchall()}  # fmt: skip
    assert {job["job_id"] for job in ray_run.state["jobs"] if job.get("job_id")} <= jobs
    nodes = {row[0] for row in events.execute(
        "SELECT DISTINCT node_id FROM events WHERE event_type LIKE 'NODE_%'").fetchall()}  # fmt: skip
    assert {node["node_id"] for node in ray_run.state["nodes"]} <= nodes
    dead_actor_states = dict(events.execute(
        """SELECT actor_id, arg_max(state, timestamp) FROM events WHERE event_type = 'ACTOR_LIFECYCLE_EVENT'
           GROUP BY ALL""").fetchall())  # fmt: skip
    for actor in ray_run.state["actors"]:
        if actor["state"] == "DEAD":
            assert dead_actor_states[actor["actor_id"]] == "DEAD", actor["class_name"]


def test_the_submission_jobs_final_status_is_archived(ray_run, events) -> None:
    from .raycluster import SUBMISSION_ID

    assert ray_run.submission["status"] == "SUCCEEDED"
    rows = events.execute(
        """SELECT state, payload FROM events WHERE event_type = 'EXPORT_SUBMISSION_JOB' AND submission_id = ?
           ORDER BY timestamp""",
        [SUBMISSION_ID],
    ).fetchall()
    assert [state for state, _ in rows][-1] == "SUCCEEDED"
    assert json.loads(rows[-1][1])["event_data"]["metadata"] == {"owner": "tests"}
    # The driver of the submission is tied to it by its submission id.
    drivers = events.execute(
        "SELECT job_id FROM events WHERE event_type = 'DRIVER_JOB_DEFINITION_EVENT' AND submission_id = ?",
        [SUBMISSION_ID],
    ).fetchall()
    assert len(drivers) == 1


def test_nothing_was_quarantined_from_a_healthy_ray(events) -> None:
    assert events.execute("SELECT count(*) FROM events WHERE event_type = 'QUARANTINED_EVENT'").fetchone() == (0,)
