"""Tailing Ray's export and legacy event files: checkpoints, rotation, truncation, new sessions."""

from __future__ import annotations

import json
import os
from pathlib import Path

from collector.ingest import Deduper, Ingest
from collector.metrics import CollectorMetrics
from collector.records import decode_record
from collector.spool import Spool, read_records
from collector.tailer import EventFileTailer

from .conftest import fixture_path


def _session(ray_dir: Path, name: str) -> Path:
    session = ray_dir / name
    (session / "logs" / "export_events").mkdir(parents=True)
    (session / "logs" / "events").mkdir(parents=True)
    latest = ray_dir / "session_latest"
    if latest.is_symlink():
        latest.unlink()
    latest.symlink_to(session)
    return session


def _tailer(tmp_path: Path) -> tuple[EventFileTailer, Spool]:
    spool = Spool(tmp_path / "spool", 1 << 30, 1 << 30)
    ingest = Ingest(spool, Deduper(), CollectorMetrics())
    return EventFileTailer(tmp_path / "ray", ingest, tmp_path / "spool" / "offsets.json"), spool


def _shipped(spool: Spool) -> list[dict]:
    spool.seal()
    rows = []
    for segment in spool.sealed_segments():
        for raw in read_records(segment.path):
            record = decode_record(raw)
            rows.extend({"session": record.session, "kind": record.kind, **e} for e in json.loads(record.body))
    return rows


def _line(event_id: str, status: str = "RUNNING") -> str:
    data = {"submission_job_id": "job-1", "status": status}
    return json.dumps({"event_id": event_id, "timestamp": 1795892664, "source_type": "EXPORT_SUBMISSION_JOB",
                       "event_data": data}) + "\n"  # fmt: skip


def test_submission_job_status_is_shipped_from_the_export_file(tmp_path: Path) -> None:
    session = _session(tmp_path / "ray", "session_a")
    source = fixture_path("export_api_files", "run1_with_enable_ray_event", "event_EXPORT_SUBMISSION_JOB.log")
    (session / "logs" / "export_events" / "event_EXPORT_SUBMISSION_JOB.log").write_bytes(source.read_bytes())
    legacy = fixture_path("legacy_events", "run1", "event_JOBS.log")
    (session / "logs" / "events" / "event_JOBS.log").write_bytes(legacy.read_bytes())
    tailer, spool = _tailer(tmp_path)
    tailer.poll()
    tailer.poll()  # nothing new: nothing twice
    rows = _shipped(spool)
    assert len(rows) == len(source.read_text().splitlines()) + len(legacy.read_text().splitlines())
    assert {row["kind"] for row in rows} == {"export", "legacy"}
    assert all(row["session"] == "session_a" for row in rows)


def test_offsets_survive_a_restart_and_partial_lines_wait(tmp_path: Path) -> None:
    session = _session(tmp_path / "ray", "session_a")
    path = session / "logs" / "export_events" / "event_EXPORT_SUBMISSION_JOB.log"
    path.write_text(_line("e1") + _line("e2")[:20])  # the second line is still being written
    tailer, spool = _tailer(tmp_path)
    tailer.poll()
    spool.close()  # the collector's process ends
    with open(path, "a") as handle:
        handle.write(_line("e2")[20:] + _line("e3"))
    restarted, restarted_spool = _tailer(tmp_path)  # a new collector process on the same spool
    restarted.poll()
    assert [row["event_id"] for row in _shipped(restarted_spool)] == ["e1", "e2", "e3"]


def test_rotated_and_truncated_files_lose_and_repeat_nothing(tmp_path: Path) -> None:
    session = _session(tmp_path / "ray", "session_a")
    path = session / "logs" / "events" / "event_RAYLET.log"
    legacy = {"source_type": "RAYLET", "timestamp": "1795892664", "message": "m", "custom_fields": {}}
    path.write_text(json.dumps({**legacy, "event_id": "r1"}) + "\n")
    tailer, spool = _tailer(tmp_path)
    tailer.poll()
    with open(path, "a") as handle:  # lines shorter than the fingerprint are no rewrite
        handle.write('{"event_id":"s","source_type":"R","timestamp":1}\n')
    tailer.poll()
    # The file grows, then is rotated away to .1 and a new file starts under the old name.
    with open(path, "a") as handle:
        handle.write(json.dumps({**legacy, "event_id": "r2"}) + "\n")
    os.rename(path, path.with_name("event_RAYLET.log.1"))
    path.write_text(json.dumps({**legacy, "event_id": "r3"}) + "\n")
    tailer.poll()
    # Truncated in place and written again from the start.
    path.write_text(json.dumps({**legacy, "event_id": "r4"}) + "\n")
    tailer.poll()
    assert sorted(row["event_id"] for row in _shipped(spool)) == ["r1", "r2", "r3", "r4", "s"]


def test_a_new_session_is_followed_after_the_old_one_is_finished(tmp_path: Path) -> None:
    old = _session(tmp_path / "ray", "session_old")
    old_file = old / "logs" / "export_events" / "event_EXPORT_SUBMISSION_JOB.log"
    old_file.write_text(_line("o1"))
    tailer, spool = _tailer(tmp_path)
    tailer.poll()
    with open(old_file, "a") as handle:
        handle.write(_line("o2", "SUCCEEDED"))  # written just before Ray restarted
    new = _session(tmp_path / "ray", "session_new")
    (new / "logs" / "export_events" / "event_EXPORT_SUBMISSION_JOB.log").write_text(_line("n1"))
    tailer.poll()
    rows = _shipped(spool)
    assert [(row["session"], row["event_id"]) for row in rows] == [
        ("session_old", "o1"), ("session_old", "o2"), ("session_new", "n1"),
    ]  # fmt: skip
