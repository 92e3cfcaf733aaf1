"""A terminal summary of what an archive holds: sessions, events by type, tasks by final state, jobs."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from archive import documents, layout
from archive.parquet import parquet_to_table
from archive.parts import list_live
from archive.storage import Storage

TASK_STATES = """
    SELECT state, count(*) AS attempts FROM (
        SELECT task_id, task_attempt, arg_max(state, timestamp) AS state FROM events
        WHERE event_type = 'TASK_LIFECYCLE_EVENT' AND state IS NOT NULL GROUP BY ALL
    ) GROUP BY state ORDER BY attempts DESC
"""
SUBMISSIONS = """
    SELECT submission_id, arg_max(state, timestamp) AS status FROM events
    WHERE event_type = 'EXPORT_SUBMISSION_JOB' GROUP BY ALL ORDER BY submission_id
"""


def summarise_archive(storage: Storage) -> str:
    lines = [f"archive {storage.uri}"]
    for info in storage.list("sessions/"):
        if not info.key.endswith("/manifest.json"):
            continue
        manifest = documents.decode(storage.get(info.key), documents.Manifest)
        ref = layout.SessionRef(manifest.namespace, manifest.cluster, manifest.session)
        lines.append("")
        lines.extend(_session_summary(storage, ref, manifest))
    return "\n".join(lines)


def _session_summary(storage: Storage, ref: layout.SessionRef, manifest: documents.Manifest) -> list[str]:
    parts = list_live(storage, "events", ref)
    closed = any(True for _ in storage.list(layout.closed_key(ref)))
    lines = [
        f"session {ref.path}  (Ray {manifest.ray_version or '?'}, {'closed' if closed else 'open'})",
        f"  {len(parts)} event parts, {sum(part.size for part in parts) / 1024:.0f} KiB",
    ]
    if not parts:
        return lines
    con = duckdb.connect()
    con.register("events", pa.concat_tables([parquet_to_table(storage.get(part.key)) for part in parts]))
    by_type = con.execute("SELECT event_type, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC").fetchall()
    lines.append("  events: " + ", ".join(f"{kind} {count}" for kind, count in by_type))
    states = con.execute(TASK_STATES).fetchall()
    lines.append("  task attempts by final state: " + ", ".join(f"{state} {count}" for state, count in states))
    for submission, status in con.execute(SUBMISSIONS).fetchall():
        lines.append(f"  submitted job {submission}: {status}")
    lines.extend(_logs_summary(storage, ref))
    lines.extend(_metrics_summary(storage, ref))
    return lines


def _parts(storage: Storage, kind: layout.PartKind, ref: layout.SessionRef) -> pa.Table | None:
    tables = [parquet_to_table(storage.get(part.key)) for part in list_live(storage, kind, ref)]
    return pa.concat_tables(tables) if tables else None


def _logs_summary(storage: Storage, ref: layout.SessionRef) -> list[str]:
    logs = _parts(storage, "logs", ref)
    if logs is None:
        return ["  logs: none"]
    con = duckdb.connect()
    con.register("logs", logs)
    files, lines, size = con.execute(
        "SELECT count(DISTINCT file_id), count(*) FILTER (WHERE newline), sum(strlen(text)) FROM logs"
    ).fetchone()  # type: ignore[misc]
    return [f"  logs: {files} files, {lines} lines, {size / 1024:.0f} KiB of text"]


def _metrics_summary(storage: Storage, ref: layout.SessionRef) -> list[str]:
    metrics = _parts(storage, "metrics", ref)
    if metrics is None:
        return ["  metrics: none"]
    con = duckdb.connect()
    con.register("metrics", metrics)
    samples, series, names, seconds = con.execute(
        "SELECT count(*), count(DISTINCT (name, labels)), count(DISTINCT name), "
        "epoch(max(timestamp)) - epoch(min(timestamp)) FROM metrics"
    ).fetchone()  # type: ignore[misc]
    return [f"  metrics: {samples} samples of {series} series ({names} metrics) over {seconds:.0f} s"]
