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
    # Snapshot columns with a value per row: a dictionary is built, then dropped, for each row group.
    "tasks": {"task_id": "PLAIN", "state_times": "PLAIN", "task_log_info": "PLAIN"},
    "task_profile_events": {"start_time_ns": "PLAIN", "end_time_ns": "PLAIN"},
}
UNSTATISTICAL_COLUMNS: dict[str, tuple[str, ...]] = {"logs": ("text", "raw"), "events": ("payload",)}

# --- Snapshots: a finished session's tables, derived by the server from the events (historyserver.reconstruct) ---
# Column names are the Ray state API's wherever Ray has one; ids are lowercase hex; times are int64 epoch
# milliseconds (`*_ms`, as the state API gives them) or nanoseconds (`*_ns`) where a timeline wants them;
# maps and nested records are JSON text. A derivation with a newer SNAPSHOT_SCHEMA_VERSION replaces old snapshots.
# 2: tasks and actors whose end Ray never reported keep their last state, with end_unknown (they were
# made FAILED/DEAD); task_log_info merged field by field.
SNAPSHOT_SCHEMA_VERSION = 2


def _snapshot(name: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(
        fields,
        metadata={"ray_history.table": name, "ray_history.schema_version": str(SNAPSHOT_SCHEMA_VERSION)},
    )


SNAPSHOT_TABLES: dict[str, pa.Schema] = {
    # A row per task attempt (a retry is a new attempt), driver tasks included (the state API hides them).
    "tasks": _snapshot(
        "tasks",
        [
            pa.field("task_id", pa.string(), nullable=False),
            pa.field("attempt_number", pa.int32(), nullable=False),
            pa.field("job_id", pa.string()),
            pa.field("name", pa.string()),
            pa.field("func_or_class_name", pa.string()),
            pa.field("type", pa.string()),  # NORMAL_TASK, ACTOR_TASK, ACTOR_CREATION_TASK, DRIVER_TASK
            # The last reported state (terminal ones win); NIL when only the definition was seen. In an ended
            # session a live one here has end_unknown set.
            pa.field("state", pa.string()),
            pa.field("node_id", pa.string()),
            pa.field("worker_id", pa.string()),
            pa.field("worker_pid", pa.int32()),
            pa.field("actor_id", pa.string()),
            pa.field("placement_group_id", pa.string()),
            pa.field("parent_task_id", pa.string()),
            pa.field("language", pa.string()),
            pa.field("required_resources", pa.string()),  # JSON object
            pa.field("serialized_runtime_env", pa.string()),
            pa.field("error_type", pa.string()),
            pa.field("error_message", pa.string()),
            pa.field("creation_time_ms", pa.int64()),
            pa.field("start_time_ms", pa.int64()),
            pa.field("end_time_ms", pa.int64()),
            pa.field("duration_ms", pa.int64()),  # end - start, null unless both are known
            pa.field("creation_time_ns", pa.int64()),
            pa.field("start_time_ns", pa.int64()),
            pa.field("end_time_ns", pa.int64()),
            pa.field("state_times", pa.string()),  # JSON object: state -> epoch ms it was first reported, in order
            # JSON object as the state API gives it: stdout_file, stderr_file and byte offsets into them.
            pa.field("task_log_info", pa.string()),
            pa.field("call_site", pa.string()),
            pa.field("label_selector", pa.string()),  # JSON object
            pa.field("is_retry", pa.bool_()),  # attempt_number > 0
            # The session ended and Ray never reported this attempt's end (FINISHED or FAILED): Ray drops
            # task events under load. Then no end time is made up, and the reason says what is known.
            pa.field("end_unknown", pa.bool_()),
            pa.field("end_unknown_reason", pa.string()),
        ],
    ),
    "actors": _snapshot(
        "actors",
        [
            pa.field("actor_id", pa.string(), nullable=False),
            pa.field("class_name", pa.string()),
            pa.field("name", pa.string()),
            pa.field("ray_namespace", pa.string()),
            pa.field("job_id", pa.string()),
            pa.field("state", pa.string()),  # DEPENDENCIES_UNREADY, PENDING_CREATION, ALIVE, RESTARTING, DEAD
            pa.field("node_id", pa.string()),  # where it last lived
            pa.field("worker_id", pa.string()),
            pa.field("pid", pa.int32()),
            pa.field("placement_group_id", pa.string()),
            pa.field("required_resources", pa.string()),  # JSON object
            pa.field("is_detached", pa.bool_()),
            pa.field("repr_name", pa.string()),
            pa.field("death_cause", pa.string()),  # JSON, as the state API gives it (snake_case keys, hex ids)
            pa.field("error_message", pa.string()),  # why it died, readable
            pa.field("start_time_ms", pa.int64()),  # first ALIVE
            pa.field("end_time_ms", pa.int64()),  # first DEAD
            pa.field("num_restarts", pa.int32()),
            pa.field("state_times", pa.string()),  # JSON object: state -> epoch ms it was first reported
            pa.field("serialized_runtime_env", pa.string()),
            pa.field("call_site", pa.string()),
            pa.field("label_selector", pa.string()),  # JSON object
            # The session ended and Ray never reported this actor DEAD: its state is the last reported.
            pa.field("end_unknown", pa.bool_()),
            pa.field("end_unknown_reason", pa.string()),
        ],
    ),
    # A row per job as /api/jobs/ lists them (a submission, with the driver it started, or a driver of its
    # own), plus Ray's internal drivers with is_hidden set.
    "jobs": _snapshot(
        "jobs",
        [
            pa.field("job_id", pa.string()),  # null for a submission that never started a driver
            pa.field("submission_id", pa.string()),
            pa.field("type", pa.string()),  # SUBMISSION or DRIVER
            pa.field("status", pa.string()),  # PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED
            pa.field("entrypoint", pa.string()),
            pa.field("message", pa.string()),
            pa.field("error_type", pa.string()),
            pa.field("start_time_ms", pa.int64()),
            pa.field("end_time_ms", pa.int64()),
            pa.field("metadata", pa.string()),  # JSON object
            pa.field("runtime_env", pa.string()),  # JSON object
            pa.field("driver_node_id", pa.string()),
            pa.field("driver_ip_address", pa.string()),
            pa.field("driver_pid", pa.int64()),
            pa.field("driver_exit_code", pa.int32()),
            pa.field("driver_agent_http_address", pa.string()),
            pa.field("is_hidden", pa.bool_(), nullable=False),
        ],
    ),
    "nodes": _snapshot(
        "nodes",
        [
            pa.field("node_id", pa.string(), nullable=False),
            pa.field("node_ip", pa.string()),
            pa.field("node_name", pa.string()),
            pa.field("hostname", pa.string()),
            pa.field("is_head_node", pa.bool_()),
            pa.field("state", pa.string()),  # ALIVE or DEAD
            pa.field("state_message", pa.string()),
            pa.field("death_reason", pa.string()),  # EXPECTED_TERMINATION, UNEXPECTED_TERMINATION, ...
            pa.field("resources_total", pa.string()),  # JSON object
            pa.field("labels", pa.string()),  # JSON object
            pa.field("instance_id", pa.string()),
            pa.field("instance_type_name", pa.string()),
            pa.field("start_time_ms", pa.int64()),
            pa.field("end_time_ms", pa.int64()),  # null while alive (the state API says 0)
        ],
    ),
    # Workers from their events, and drivers from their jobs' events (the state API lists both).
    "workers": _snapshot(
        "workers",
        [
            pa.field("worker_id", pa.string(), nullable=False),
            pa.field("worker_type", pa.string()),  # WORKER, DRIVER, SPILL_WORKER, RESTORE_WORKER
            pa.field("node_id", pa.string()),
            pa.field("pid", pa.int32()),
            pa.field("job_id", pa.string()),
            pa.field("is_alive", pa.bool_()),
            pa.field("exit_type", pa.string()),
            pa.field("exit_detail", pa.string()),
            pa.field("worker_launch_time_ms", pa.int64()),
            pa.field("worker_launched_time_ms", pa.int64()),
            pa.field("start_time_ms", pa.int64()),
            pa.field("end_time_ms", pa.int64()),
        ],
    ),
    # The last answer of the dashboard's /api/v0/placement_groups for each group (they have no event stream).
    "placement_groups": _snapshot(
        "placement_groups",
        [
            pa.field("placement_group_id", pa.string(), nullable=False),
            pa.field("name", pa.string()),
            pa.field("creator_job_id", pa.string()),
            pa.field("state", pa.string()),
            pa.field("strategy", pa.string()),
            pa.field("bundles", pa.string()),  # JSON array
            pa.field("is_detached", pa.bool_()),
            pa.field("stats", pa.string()),  # JSON object
            pa.field("observed_at_ms", pa.int64()),  # when the dashboard gave this answer
        ],
    ),
    # A row per profile entry (task:execute, task:store_outputs, submit_task...): the timeline's spans.
    "task_profile_events": _snapshot(
        "task_profile_events",
        [
            pa.field("task_id", pa.string()),
            pa.field("attempt_number", pa.int32()),
            pa.field("job_id", pa.string()),
            pa.field("node_id", pa.string()),
            pa.field("worker_id", pa.string()),  # the component's id: a worker's or a driver's
            pa.field("component_type", pa.string()),  # worker, driver
            pa.field("node_ip_address", pa.string()),
            pa.field("event_name", pa.string()),
            pa.field("start_time_ns", pa.int64()),
            pa.field("end_time_ns", pa.int64()),
            pa.field("extra_data", pa.string()),  # JSON text as Ray sent it
        ],
    ),
}
