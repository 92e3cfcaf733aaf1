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

# Parquet settings measured on real captures: zstd level 1 is the size/speed sweet spot.
PARQUET_COMPRESSION = "zstd"
PARQUET_COMPRESSION_LEVEL = 1
