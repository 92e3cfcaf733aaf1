"""The Parquet schemas of the archive, each defined once. Both the collector and the server import them."""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

# A row per event. Typed columns hold what queries filter on (ids as lowercase hex); `payload` holds,
# as JSON, every field of the event that the typed columns do not, so the event can be rebuilt whole
# (archive.events.rebuild_event) and the server can derive new columns without re-collecting.
EVENTS = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("source_type", pa.string()),
        pa.field("timestamp", pa.timestamp("ns", tz="UTC"), nullable=False),
        pa.field("session_name", pa.string(), nullable=False),
        # The node whose agent reported the event (the event's top-level nodeId).
        pa.field("source_node_id", pa.string()),
        # The node the event is about: where a task ran, a node's own id, a driver's node.
        pa.field("node_id", pa.string()),
        pa.field("job_id", pa.string()),
        pa.field("task_id", pa.string()),
        pa.field("task_attempt", pa.int32()),
        pa.field("actor_id", pa.string()),
        pa.field("worker_id", pa.string()),
        pa.field("placement_group_id", pa.string()),
        pa.field("submission_id", pa.string()),
        # The last state a lifecycle event carries (or a submission job's status).
        pa.field("state", pa.string()),
        pa.field("payload", pa.string(), nullable=False),
    ],
    metadata={"ray_history.table": "events", "ray_history.schema_version": str(SCHEMA_VERSION)},
)

EVENT_COLUMNS: tuple[str, ...] = tuple(EVENTS.names)

# A row per line of a log file (or per piece of one: a very long line, or a last line still being
# written, arrives in pieces that share its line number). `text` is the line without its newline;
# `raw` holds the exact bytes only when `text` cannot (invalid UTF-8), so a file is rebuilt byte for
# byte by archive.logs.rebuild_file. A row with `omitted_bytes` says that many bytes from `offset` on
# were left out on purpose (an exclude glob, the per-file cap), and why.
LOGS = pa.schema(
    [
        pa.field("node", pa.string(), nullable=False),  # the archive's node segment (the pod)
        pa.field("node_id", pa.string()),  # Ray's node id, hex
        pa.field("file", pa.string(), nullable=False),  # relative to the session folder: logs/raylet.out
        # One physical file: it keeps its id when rotation renames it, and a truncated file gets a new one.
        pa.field("file_id", pa.string(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("line_number", pa.int64(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("raw", pa.binary()),
        pa.field("newline", pa.bool_(), nullable=False),
        # From the file name (worker-<worker>-<job>-<pid>.out, job-driver-<submission>.log, ...) and
        # from Ray's `:job_id:`, `:task_name:` and `:actor_name:` markers in worker output.
        pa.field("job_id", pa.string()),
        pa.field("worker_id", pa.string()),
        pa.field("pid", pa.int32()),
        pa.field("submission_id", pa.string()),
        pa.field("task_name", pa.string()),
        pa.field("actor_name", pa.string()),
        # When the collector read the line: it was written at or before this time.
        pa.field("read_at", pa.timestamp("ns", tz="UTC"), nullable=False),
        pa.field("omitted_bytes", pa.int64()),
        pa.field("omitted_reason", pa.string()),
    ],
    metadata={"ray_history.table": "logs", "ray_history.schema_version": str(SCHEMA_VERSION)},
)

# A row per Prometheus sample scraped from a node's endpoints.
METRICS = pa.schema(
    [
        pa.field("timestamp", pa.timestamp("ns", tz="UTC"), nullable=False),
        pa.field("node", pa.string(), nullable=False),
        pa.field("node_id", pa.string()),
        pa.field("target", pa.string(), nullable=False),  # host:port scraped
        pa.field("name", pa.string(), nullable=False),  # the sample's name (ray_tasks, x_bucket, x_sum...)
        pa.field("type", pa.string()),  # counter, gauge, histogram, summary or unknown
        pa.field("labels", pa.string(), nullable=False),  # JSON object, keys sorted: one text per series
        pa.field("value", pa.float64(), nullable=False),
    ],
    metadata={"ray_history.table": "metrics", "ray_history.schema_version": str(SCHEMA_VERSION)},
)

# Parquet settings measured on real captures: zstd level 1 is the size/speed sweet spot.
PARQUET_COMPRESSION = "zstd"
PARQUET_COMPRESSION_LEVEL = 1

# Per-table Parquet column settings, where the defaults (dictionary encoding, statistics) cost more
# than they give. In logs, offsets and line numbers only grow within a file: delta encoding stores
# them in a few bits (dictionary encoding made them 7% of the raw log size); text is too varied for
# a dictionary, and min/max statistics of free text help no query.
PLAIN_COLUMNS: dict[str, dict[str, str]] = {
    "logs": {"offset": "DELTA_BINARY_PACKED", "line_number": "DELTA_BINARY_PACKED", "text": "PLAIN", "raw": "PLAIN"},
}
UNSTATISTICAL_COLUMNS: dict[str, tuple[str, ...]] = {"logs": ("text", "raw"), "events": ("payload",)}
