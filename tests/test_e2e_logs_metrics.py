"""End to end with real Ray and SeaweedFS: logs, metrics and dashboard snapshots in the archive."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from archive.logs import file_ids_by_name, rebuild_file
from archive.parquet import parquet_to_table, table_rows

pytestmark = pytest.mark.ray


def archived(ray_run, kind: str) -> pa.Table:
    tables = [parquet_to_table(ray_run.storage.get(info.key)) for info in ray_run.storage.list(f"{kind}/")]
    return pa.concat_tables(tables)


@pytest.fixture(scope="module")
def logs(ray_run) -> pa.Table:
    return archived(ray_run, "logs")


def test_driver_supervisor_and_every_worker_log_is_byte_identical_in_the_archive(ray_run, logs) -> None:
    session = ray_run.session_dir
    wanted = [
        session / "logs" / f"job-driver-{_submission_id(ray_run)}.log",
        *sorted((session / "logs").glob("jobs/supervisor-*.log")),
        *sorted((session / "logs").glob("worker-*.out")),
        *sorted((session / "logs").glob("worker-*.err")),
    ]
    assert len(wanted) > 10
    by_name = file_ids_by_name(logs)
    for path in wanted:
        name = path.relative_to(session).as_posix()
        assert name in by_name, f"{name} is not in the archive"
        rows = logs.filter(pc.equal(logs["file_id"], by_name[name]))
        assert rebuild_file(rows) == path.read_bytes(), name


def test_every_file_of_the_session_logs_folder_is_accounted_for(ray_run, logs) -> None:
    on_disk = {p.relative_to(ray_run.session_dir).as_posix() for p in (ray_run.session_dir / "logs").rglob("*")
               if p.is_file()}  # fmt: skip
    assert on_disk - set(file_ids_by_name(logs)) == set()


def test_lines_of_a_named_task_and_actor_are_attributed_to_them(ray_run, logs) -> None:
    rows = table_rows(logs.filter(pc.starts_with(logs["file"], "logs/worker-")))
    square = [row for row in rows if row["text"].startswith("square(") and not row["text"].startswith(":")]
    assert square and {row["task_name"] for row in square} == {"square"}
    assert all(row["job_id"] and row["worker_id"] and row["pid"] for row in square)
    counter = [row for row in rows if row["text"].startswith("Counter is at")]
    assert len(counter) >= 6  # three calls, in the submitted job and in the direct driver
    assert all(row["actor_name"] and row["actor_name"].startswith("Counter") for row in counter)
    assert all(row["task_name"] is None for row in counter)


@pytest.fixture(scope="module")
def metrics(ray_run) -> list[dict]:
    return table_rows(archived(ray_run, "metrics"))


def test_metrics_span_the_run_and_hold_ray_task_and_node_metrics(ray_run, metrics) -> None:
    names = {row["name"] for row in metrics}
    assert "ray_tasks" in names
    assert {"ray_node_cpu_utilization", "ray_node_mem_used"} <= names
    stamps = [row["timestamp"] for row in metrics]
    assert min(stamps) < ray_run.workload_started_ns + 15_000_000_000
    assert max(stamps) > ray_run.workload_ended_ns - 15_000_000_000
    finished = [
        row for row in metrics if row["name"] == "ray_tasks" and json.loads(row["labels"]).get("State") == "FINISHED"
    ]
    assert any(json.loads(row["labels"]).get("Name") == "square" for row in finished)


def test_the_workloads_placement_group_is_in_a_snapshot_with_its_bundles(ray_run) -> None:
    events = archived(ray_run, "events")
    groups = table_rows(events.filter(pc.equal(events["event_type"], "DASHBOARD_PLACEMENT_GROUP")))
    wanted = ray_run.driver_outcome["placement_group_id"]
    snapshots = [row for row in groups if row["placement_group_id"] == wanted]
    assert snapshots, f"placement group {wanted} is in no snapshot"
    group = json.loads(snapshots[-1]["payload"])
    assert [bundle["unit_resources"] for bundle in group["bundles"]] == [{"CPU": 0.5}, {"CPU": 0.5}]
    assert group["strategy"] == "PACK"
    assert {row["state"] for row in snapshots} <= {"CREATED", "REMOVED", "PENDING"}
    jobs = table_rows(events.filter(pc.equal(events["event_type"], "DASHBOARD_JOB")))
    assert any(row["submission_id"] == _submission_id(ray_run) and row["state"] == "SUCCEEDED" for row in jobs)


def _submission_id(ray_run) -> str:
    return str(ray_run.submission["submission_id"])
