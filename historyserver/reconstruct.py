"""A session's snapshot tables (archive.schema.SNAPSHOT_TABLES), rebuilt from its raw events with DuckDB.

The connection holds a table or view `events` with the archive's EVENTS schema: every raw part of one
session. Each snapshot table is one SQL query over it that selects its event types first, reads typed
columns where they suffice and parses a payload's JSON, once, where they do not. Over Parquet, a query
that reads no payload of an event type that is everywhere (task lifecycle, definition and profile events)
is cheap; one that does decompresses the whole payload column, so each of those is read once.

Rules (docs/archive.md, "Reconstruction rules"):
- Task events are merged by (task id, attempt). Ray reports an attempt in pieces: the owner's PENDING*,
  SUBMITTED_TO_WORKER and FINISHED/FAILED, the executing worker's RUNNING (the only one with its pid), an
  event without transitions carrying the log offsets. Every transition counts at its own timestamp.
- A terminal state wins over a later non-terminal one: two processes' clocks can put a worker's RUNNING
  after its owner's FINISHED.
- Duplicate events (a batch the agent sent twice) change nothing: every aggregate is idempotent (any value,
  min, max, first report), and profile events, each of which becomes rows, are kept once per event id.
- A task's log info can come in pieces too (files and start offsets, then end offsets): each field is the
  latest report's where it has one, else the earliest report's.
- A history invents no failures. Ray drops task events when its buffers overflow, so a task attempt or an
  actor of an ended session whose end was never reported keeps its last reported state, with no end time,
  `end_unknown` set and `end_unknown_reason` saying what is known. A job, worker or node still live at the
  end ends at `SessionEnd.end_ns` with a terminal state that says why (CLUSTER_TERMINATED): the GCS reports
  those, and the end of the cluster is what ended them. An incomplete session (its collectors silent too
  long) counts as ended at its last heartbeat; a running one is shown as its events left it.
- Ids are lowercase hex, NULL where Ray writes none (empty or all 0xff); times are epoch ms (`*_ms`, as the
  state API has them) or ns.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import duckdb
import msgspec
import pyarrow as pa

from archive.ids import BadId, b64_to_hex
from archive.schema import SNAPSHOT_TABLES

# Derived when first asked for, not when the session is opened: the timeline's spans are as many rows as
# all the tasks' events together, and someone paging through tasks should not wait for them.
ON_DEMAND_TABLES = frozenset({"task_profile_events"})
OPENING_TABLES = tuple(name for name in SNAPSHOT_TABLES if name not in ON_DEMAND_TABLES)

# What a job or worker that the end of the cluster cut short reports as its error type or exit type.
# Not one of Ray's own values, on purpose: Ray never saw these end.
CLUSTER_TERMINATED = "CLUSTER_TERMINATED"

# Ray's TaskStatus, in its own order, which is the order a task moves through them.
TASK_STATES = (
    "NIL", "PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "PENDING_OBJ_STORE_MEM_AVAIL", "PENDING_ARGS_FETCH",
    "SUBMITTED_TO_WORKER", "PENDING_ACTOR_TASK_ARGS_FETCH", "PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY", "RUNNING",
    "RUNNING_IN_RAY_GET", "RUNNING_IN_RAY_WAIT", "FINISHED", "FAILED", "GETTING_AND_PINNING_ARGS",
)  # fmt: skip
# The states Ray 2.60's task events report (all the captures hold): each gets a column of its own while
# attempts are aggregated. Any other state takes a slower, general path: a column per state costs time
# for every attempt.
REPORTED_TASK_STATES = (
    "PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER",
    "PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY", "RUNNING", "FINISHED", "FAILED",
)  # fmt: skip


@dataclass(frozen=True)
class SessionEnd:
    """What is known of how the session ended."""

    closed: bool  # closed.json exists (the cluster is gone)
    end_ns: int | None  # closed_at (or the last heartbeat), ns since epoch
    reason: str | None  # closed.json's reason


def create_snapshot_tables(con: duckdb.DuckDBPyConnection, end: SessionEnd,
                           names: Iterable[str] = SNAPSHOT_TABLES) -> dict[str, int]:  # fmt: skip
    """Each named snapshot table (all by default) as a DuckDB table of `con`, with the columns and
    types of its schema in archive.schema.SNAPSHOT_TABLES, derived from the `events` table; their rows.

    Leaves its helpers (temporary macros and tables, all named rh_*) on the connection.
    """
    _define_helpers(con, end)
    rows = {}
    for name in names:
        if name == "actors":
            # Actors are few (thousands at most), and their death causes are rewritten in Python.
            actors = _with_api_death_causes(con.sql(_conformed(con, name, QUERIES[name])).to_arrow_table())
            con.register("rh_actors", actors)
            con.execute('CREATE OR REPLACE TABLE "actors" AS SELECT * FROM rh_actors')
            con.unregister("rh_actors")
        else:
            sql = task_profile_events_query(con) if name == "task_profile_events" else QUERIES[name]
            con.execute(f'CREATE OR REPLACE TABLE "{name}" AS {_conformed(con, name, sql)}')
        [(rows[name],)] = con.execute(f'SELECT count(*) FROM "{name}"').fetchall()
    return rows


def snapshot_table(con: duckdb.DuckDBPyConnection, name: str) -> pa.Table:
    """A snapshot table of `con` as Arrow, with its schema (and the schema's metadata)."""
    return con.sql(f'SELECT * FROM "{name}"').to_arrow_table().cast(SNAPSHOT_TABLES[name])


def build_snapshots(con: duckdb.DuckDBPyConnection, end: SessionEnd,
                    names: Iterable[str] = SNAPSHOT_TABLES) -> dict[str, pa.Table]:  # fmt: skip
    """create_snapshot_tables, as Arrow tables."""
    return {name: snapshot_table(con, name) for name in create_snapshot_tables(con, end, names)}


def _conformed(con: duckdb.DuckDBPyConnection, name: str, sql: str) -> str:
    """The query with its schema's column types; AssertionError if its columns are not the schema's."""
    schema = SNAPSHOT_TABLES[name]
    columns = con.sql(sql).columns  # bound, not run
    if columns != schema.names:
        raise AssertionError(f"the {name} query gives {columns}, the schema wants {schema.names}")
    casts = ", ".join(f'"{field.name}"::{_SQL_TYPES[field.type]} AS "{field.name}"' for field in schema)
    return f"SELECT {casts} FROM ({sql})"


_SQL_TYPES = {pa.string(): "VARCHAR", pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.bool_(): "BOOLEAN"}


# --- SQL helpers ---------------------------------------------------------------------------------------

_TASK_STATE_LIST = "[" + ", ".join(f"'{state}'" for state in TASK_STATES) + "]"
_TERMINAL_CODES = ", ".join(str(TASK_STATES.index(state) + 1) for state in ("FINISHED", "FAILED"))

# Ray writes an absent id as empty or as all 0xff bytes; the snapshots say NULL.
_MACROS = f"""
CREATE OR REPLACE TEMP MACRO rh_id(hex_id) AS CASE WHEN ltrim(hex_id, 'f') = '' THEN NULL ELSE hex_id END;
CREATE OR REPLACE TEMP MACRO rh_b64_id(value) AS rh_id(lower(hex(try(from_base64(value)))));
CREATE OR REPLACE TEMP MACRO rh_ns(rfc3339) AS epoch_ns(try_cast(rfc3339 AS TIMESTAMP_NS));
CREATE OR REPLACE TEMP MACRO rh_ms(ns) AS ns // 1000000;
-- Ray's proto JSON writes 64-bit numbers as strings and 0 for unset times.
CREATE OR REPLACE TEMP MACRO rh_time_ms(value) AS nullif(try_cast(value AS BIGINT), 0);
-- A task state as its 1-based position in TASK_STATES (NULL for a state this code does not know).
CREATE OR REPLACE TEMP MACRO rh_task_state_code(state) AS list_position({_TASK_STATE_LIST}, state);
-- One number that orders a task's transitions: terminal ones last, then by time (to the microsecond, so
-- that it fits), then by state order. Its maximum is the final state: a max of one number aggregates much
-- faster than an arg_max.
CREATE OR REPLACE TEMP MACRO rh_task_rank(code, at_ns) AS
    (CASE WHEN code IN ({_TERMINAL_CODES}) THEN 1 ELSE 0 END) * 4611686018427387904 + (at_ns // 1000) * 32 + code;
CREATE OR REPLACE TEMP MACRO rh_rank_state(rank) AS {_TASK_STATE_LIST}[(rank % 32)::INTEGER];
CREATE OR REPLACE TEMP MACRO rh_rank_is_terminal(rank) AS rank >= 4611686018427387904;
-- A JSON object of state -> epoch ms from (state, ns) rows with one row per state, earliest first.
-- Two log infos of one attempt, field by field: the latest report's value where it has one.
CREATE OR REPLACE TEMP MACRO rh_merged_log_info(latest, earliest) AS {{
    'stdoutFile': coalesce(latest.stdoutFile, earliest.stdoutFile),
    'stderrFile': coalesce(latest.stderrFile, earliest.stderrFile),
    'stdoutStart': coalesce(latest.stdoutStart, earliest.stdoutStart),
    'stdoutEnd': coalesce(latest.stdoutEnd, earliest.stdoutEnd),
    'stderrStart': coalesce(latest.stderrStart, earliest.stderrStart),
    'stderrEnd': coalesce(latest.stderrEnd, earliest.stderrEnd)}};
CREATE OR REPLACE TEMP MACRO rh_state_times(state, ns) AS
    '{{' || string_agg(to_json(state) || ':' || (ns // 1000000), ',' ORDER BY ns, state) || '}}';
"""


def _define_helpers(con: duckdb.DuckDBPyConnection, end: SessionEnd) -> None:
    con.execute(_MACROS)
    # A table, not a view: jobs and workers read it five times between them.
    con.execute(DRIVER_JOBS)
    # One row the queries join to decide what a closed session's still-live entities become.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE rh_session_end AS "
        "SELECT ?::BOOLEAN AS closed, ?::BIGINT AS end_ns, ?::VARCHAR AS reason, ?::VARCHAR AS error_type",
        [end.closed, end.end_ns, end.reason, CLUSTER_TERMINATED],
    )


def _shape(spec: dict[str, Any]) -> str:
    """A json_transform structure as SQL text: the fields to read from a payload and their types."""
    return "'" + json.dumps(spec, separators=(",", ":")).replace("'", "''") + "'"


_FUNCTION = {
    "pythonFunctionDescriptor": {"moduleName": "VARCHAR", "className": "VARCHAR", "functionName": "VARCHAR"},
    "javaFunctionDescriptor": {"className": "VARCHAR", "functionName": "VARCHAR"},
    "cppFunctionDescriptor": {"className": "VARCHAR", "functionName": "VARCHAR"},
}
_DEFINITION_COMMON = {
    "language": "VARCHAR",
    "requiredResources": "JSON",
    "parentTaskId": "VARCHAR",
    "placementGroupId": "VARCHAR",
    "serializedRuntimeEnv": "VARCHAR",
    "callSite": "VARCHAR",
    "labelSelector": "JSON",
}
# Either definition event: the other key is absent, and json_transform makes it NULL.
TASK_DEFINITION = _shape(
    {
        "taskDefinitionEvent": {
            "taskName": "VARCHAR",
            "taskType": "VARCHAR",
            "taskFunc": _FUNCTION,
            **_DEFINITION_COMMON,
        },
        "actorTaskDefinitionEvent": {"actorTaskName": "VARCHAR", "actorFunc": _FUNCTION, **_DEFINITION_COMMON},
    }
)
# The error and the log offsets are rare: kept as JSON text, read only where present (a struct for every
# event would cost more than parsing them twice).
TASK_LIFECYCLE = _shape(
    {
        "taskLifecycleEvent": {
            "stateTransitions": [{"state": "VARCHAR", "timestamp": "VARCHAR"}],
            "workerPid": "BIGINT",
            "rayErrorInfo": "JSON",
            "taskLogInfo": "JSON",
        }
    }
)
TASK_ERROR = _shape({"errorType": "VARCHAR", "errorMessage": "VARCHAR"})
TASK_LOG_INFO = _shape(
    {
        "stdoutFile": "VARCHAR",
        "stderrFile": "VARCHAR",
        "stdoutStart": "BIGINT",
        "stdoutEnd": "BIGINT",
        "stderrStart": "BIGINT",
        "stderrEnd": "BIGINT",
    }
)
ACTOR_DEFINITION = _shape(
    {
        "actorDefinitionEvent": {
            "className": "VARCHAR",
            "name": "VARCHAR",
            "rayNamespace": "VARCHAR",
            "isDetached": "BOOLEAN",
            "requiredResources": "JSON",
            "placementGroupId": "VARCHAR",
            "serializedRuntimeEnv": "VARCHAR",
            "callSite": "VARCHAR",
            "labelSelector": "JSON",
        }
    }
)
ACTOR_LIFECYCLE = _shape(
    {
        "actorLifecycleEvent": {
            "stateTransitions": [
                {
                    "state": "VARCHAR",
                    "timestamp": "VARCHAR",
                    "nodeId": "VARCHAR",
                    "workerId": "VARCHAR",
                    "pid": "BIGINT",
                    "reprName": "VARCHAR",
                    "deathCause": "JSON",
                }
            ]
        }
    }
)
DRIVER_JOB_DEFINITION = _shape(
    {
        "driverJobDefinitionEvent": {
            "driverPid": "BIGINT",
            "entrypoint": "VARCHAR",
            "config": {"serializedRuntimeEnv": "VARCHAR", "metadata": "JSON"},
        }
    }
)
DRIVER_JOB_LIFECYCLE = _shape(
    {"driverJobLifecycleEvent": {"stateTransitions": [{"state": "VARCHAR", "timestamp": "VARCHAR"}]}}
)
SUBMISSION_STATUS = _shape(
    {
        "event_data": {
            "status": "VARCHAR",
            "entrypoint": "VARCHAR",
            "message": "VARCHAR",
            "error_type": "VARCHAR",
            "start_time": "BIGINT",
            "end_time": "BIGINT",
            "metadata": "JSON",
            "runtime_env_json": "VARCHAR",
            "driver_agent_http_address": "VARCHAR",
            "driver_node_id": "VARCHAR",
            "driver_exit_code": "INTEGER",
        }
    }
)
DASHBOARD_JOB = _shape(
    {
        "type": "VARCHAR",
        "status": "VARCHAR",
        "entrypoint": "VARCHAR",
        "message": "VARCHAR",
        "error_type": "VARCHAR",
        "start_time": "BIGINT",
        "end_time": "BIGINT",
        "metadata": "JSON",
        "runtime_env": "JSON",
        "driver_agent_http_address": "VARCHAR",
        "driver_node_id": "VARCHAR",
        "driver_exit_code": "INTEGER",
        "driver_info": {"pid": "BIGINT", "node_ip_address": "VARCHAR"},
    }
)
NODE_DEFINITION = _shape(
    {
        "nodeDefinitionEvent": {
            "nodeIpAddress": "VARCHAR",
            "labels": "JSON",
            "startTimestamp": "VARCHAR",
            "hostname": "VARCHAR",
            "nodeName": "VARCHAR",
            "instanceId": "VARCHAR",
            "instanceTypeName": "VARCHAR",
        }
    }
)
NODE_LIFECYCLE = _shape(
    {
        "nodeLifecycleEvent": {
            "stateTransitions": [
                {
                    "state": "VARCHAR",
                    "timestamp": "VARCHAR",
                    "resources": "JSON",
                    "deathInfo": {"reason": "VARCHAR", "reasonMessage": "VARCHAR"},
                }
            ]
        }
    }
)
WORKER_DEFINITION = _shape({"workerDefinitionEvent": {"pid": "BIGINT", "workerType": "VARCHAR"}})
WORKER_LIFECYCLE = _shape(
    {
        "workerLifecycleEvent": {
            "stateTransitions": [
                {
                    "state": "VARCHAR",
                    "timestamp": "VARCHAR",
                    "workerLaunchTimeMs": "VARCHAR",
                    "workerLaunchedTimeMs": "VARCHAR",
                    "startTimeMs": "VARCHAR",
                    "endTimeMs": "VARCHAR",
                    "deathInfo": {"exitType": "VARCHAR", "exitDetail": "VARCHAR"},
                }
            ]
        }
    }
)
PLACEMENT_GROUP = _shape(
    {
        "name": "VARCHAR",
        "state": "VARCHAR",
        "strategy": "VARCHAR",
        "bundles": "JSON",
        "is_detached": "BOOLEAN",
        "stats": "JSON",
    }
)
TASK_PROFILE = _shape(
    {
        "taskProfileEvents": {
            "profileEvents": {
                "componentType": "VARCHAR",
                "componentId": "VARCHAR",
                "nodeIpAddress": "VARCHAR",
                "events": [
                    {"startTime": "VARCHAR", "endTime": "VARCHAR", "extraData": "VARCHAR", "eventName": "VARCHAR"}
                ],
            }
        }
    }
)


# --- tasks ---------------------------------------------------------------------------------------------


def _first_reports() -> str:
    """Aggregates: when each state Ray reports was first reported (a state can be reported twice)."""
    return ",\n           ".join(
        f'min(CASE WHEN code = {TASK_STATES.index(state) + 1} THEN at_ns END) AS "{state}"'
        for state in REPORTED_TASK_STATES
    )


def _state_times() -> str:
    """The JSON object of state -> epoch ms: the states Ray reports in their order, then any other."""
    known = ",\n        ".join(
        f"""CASE WHEN "{state}" IS NOT NULL THEN '"{state}":' || rh_ms("{state}") END"""
        for state in REPORTED_TASK_STATES
    )
    others = "array_to_string(list_transform(other_states, lambda o: to_json(o.state) || ':' || rh_ms(o.at_ns)), ',')"
    return f"'{{' || concat_ws(',',\n        {known},\n        {others}) || '}}'"


TASKS = f"""
WITH
lifecycle AS (  -- a row per lifecycle event, its payload parsed once
    SELECT task_id, task_attempt AS attempt_number, rh_id(node_id) AS node_id, rh_id(worker_id) AS worker_id,
           epoch_ns(timestamp) AS event_ns, json_transform(payload, {TASK_LIFECYCLE}).taskLifecycleEvent AS body
    FROM events
    WHERE event_type = 'TASK_LIFECYCLE_EVENT' AND task_id IS NOT NULL AND task_attempt IS NOT NULL
),
definition_events AS (
    SELECT * FROM events
    WHERE event_type IN ('TASK_DEFINITION_EVENT', 'ACTOR_TASK_DEFINITION_EVENT')
      AND task_id IS NOT NULL AND task_attempt IS NOT NULL
),
definitions AS MATERIALIZED (  -- a row per definition event, its text known by its 64-bit hash
    -- The texts themselves are not kept here: reading them again is cheaper than holding a million.
    SELECT task_id, task_attempt AS attempt_number, job_id, actor_id, timestamp AS defined_at,
           hash(payload) AS definition_id
    FROM definition_events
),
definition_texts AS (
    -- The ids that tell a function's tasks apart are in typed columns: the rest of their definitions is
    -- mostly the same few texts, each parsed and turned into columns here once. (Two texts of one session
    -- with one hash: odds of 1 in 10^7 with a million different texts.)
    SELECT definition_id,
           coalesce(d.taskDefinitionEvent.taskName, d.actorTaskDefinitionEvent.actorTaskName) AS name,
           CASE WHEN coalesce(function.className, '') = '' THEN function.functionName
                ELSE function.className || '.' || function.functionName END AS func_or_class_name,
           CASE WHEN d.taskDefinitionEvent IS NOT NULL THEN coalesce(d.taskDefinitionEvent.taskType, 'NORMAL_TASK')
                ELSE 'ACTOR_TASK' END AS type,
           rh_b64_id(common.placementGroupId) AS placement_group_id,
           rh_b64_id(common.parentTaskId) AS parent_task_id,
           common.language AS language,
           common.requiredResources AS required_resources,
           common.serializedRuntimeEnv AS serialized_runtime_env,
           nullif(common.callSite, '') AS call_site,
           common.labelSelector AS label_selector
    FROM (SELECT definition_id, d, coalesce(d.taskDefinitionEvent, d.actorTaskDefinitionEvent) AS common,
                 coalesce(d.taskDefinitionEvent.taskFunc.pythonFunctionDescriptor,
                          d.actorTaskDefinitionEvent.actorFunc.pythonFunctionDescriptor,
                          d.taskDefinitionEvent.taskFunc.javaFunctionDescriptor,
                          d.actorTaskDefinitionEvent.actorFunc.javaFunctionDescriptor,
                          d.taskDefinitionEvent.taskFunc.cppFunctionDescriptor,
                          d.actorTaskDefinitionEvent.actorFunc.cppFunctionDescriptor) AS function
          FROM (SELECT definition_id, json_transform(payload, {TASK_DEFINITION}) AS d
                FROM (SELECT hash(payload) AS definition_id, any_value(payload) AS payload
                      FROM definition_events
                      GROUP BY definition_id)))
),
reports AS (  -- a row per transition (an event without any, which carries log offsets, keeps one row)
    SELECT task_id, attempt_number, node_id, worker_id,
           -- Only the executing worker's RUNNING report carries its pid; the owner's say 0.
           nullif(body.workerPid, 0) AS worker_pid,
           body.rayErrorInfo AS error_info,
           -- The log info behind its event's time, so that the greatest text is the latest report.
           lpad(event_ns::VARCHAR, 20, '0') || body.taskLogInfo AS log_info,
           transition.state AS state, rh_task_state_code(transition.state) AS code,
           rh_ns(transition.timestamp) AS at_ns
    FROM (SELECT *, unnest(coalesce(nullif(body.stateTransitions, []), [NULL])) AS transition FROM lifecycle)
    UNION ALL BY NAME
    SELECT task_id, attempt_number, job_id, actor_id, defined_at, definition_id
    FROM definitions
),
attempts AS (
    -- Everything Ray said of each attempt. Every aggregate is idempotent, so a duplicated event changes
    -- nothing. Each keeps a plain value and skips the NULLs of the rows that do not carry it: structs,
    -- lists, arg_max and FILTER clauses made this several times slower for a million attempts. An attempt
    -- runs on one node and worker and fails at most once, so the reports that name them agree.
    SELECT task_id, attempt_number,
           any_value(job_id) AS job_id,
           min(definition_id) AS definition_id,
           min(defined_at) AS defined_at,
           any_value(actor_id) AS actor_id,
           any_value(node_id) AS node_id,
           any_value(worker_id) AS worker_id,
           max(worker_pid) AS worker_pid,
           any_value(error_info) AS error_info,
           -- Ray can send the log files and start offsets on one event and the end offsets on a later one:
           -- the latest and the earliest report are merged field by field below. (A min and a max cost
           -- little; a list or an arg_max per field, which a third piece would need, cost seconds.)
           max(log_info) AS log_latest,
           min(log_info) AS log_earliest,
           max(rh_task_rank(code, at_ns)) AS last_rank,
           {_first_reports()},
           list({{'state': state, 'at_ns': at_ns}}) FILTER (state NOT IN {REPORTED_TASK_STATES}) AS other_reports
    FROM reports
    GROUP BY ALL
),
merged AS (
    SELECT a.*, t.* EXCLUDE (definition_id),
           coalesce(rh_rank_state(last_rank), 'NIL') AS reported_state,
           s.closed AND NOT coalesce(rh_rank_is_terminal(last_rank), false) AS end_unknown,
           s.end_ns AS session_end_ns, s.reason AS session_reason, dj.finished_ns AS job_finished_ns,
           list_sort(other_reports) AS other_sorted  -- by state, then time
    FROM attempts AS a
    LEFT JOIN definition_texts AS t USING (definition_id)
    -- An attempt's job id is its task id's last 4 bytes (a missing definition leaves job_id NULL).
    LEFT JOIN rh_driver_jobs AS dj ON dj.job_id = coalesce(a.job_id, right(a.task_id, 8))
    CROSS JOIN rh_session_end AS s
),
final AS (
    SELECT *,
           -- States Ray 2.60 does not report, each from its first report (they never decide the final state).
           list_filter(other_sorted, lambda o, i: i = 1 OR other_sorted[i - 1].state != o.state) AS other_states,
           json_transform(error_info, {TASK_ERROR}) AS error,
           CASE WHEN log_latest IS NULL THEN NULL
                WHEN substr(log_latest, 21) = substr(log_earliest, 21)
                THEN json_transform(substr(log_latest, 21), {TASK_LOG_INFO})
                ELSE rh_merged_log_info(json_transform(substr(log_latest, 21), {TASK_LOG_INFO}),
                                        json_transform(substr(log_earliest, 21), {TASK_LOG_INFO})) END AS log,
           coalesce("PENDING_ARGS_AVAIL", epoch_ns(defined_at)) AS creation_ns,
           "RUNNING" AS start_ns,
           -- An end nobody reported stays unknown: no time is made up for it.
           CASE WHEN reported_state = 'FINISHED' THEN "FINISHED"
                WHEN reported_state = 'FAILED' THEN "FAILED" END AS end_ns
    FROM merged
)
SELECT
    task_id,
    attempt_number::INTEGER AS attempt_number,
    -- A task id ends with its job's id: an attempt whose definition is missing still has one.
    coalesce(job_id, right(task_id, 8)) AS job_id,
    name,
    func_or_class_name,
    type,
    reported_state AS state,
    node_id,
    worker_id,
    worker_pid::INTEGER AS worker_pid,
    -- An actor creation task's id is the actor's id behind 8 bytes of 0xff.
    CASE WHEN type = 'ACTOR_CREATION_TASK' THEN rh_id(substr(task_id, 17)) ELSE rh_id(actor_id) END AS actor_id,
    placement_group_id,
    parent_task_id,
    language,
    required_resources,
    serialized_runtime_env,
    error.errorType AS error_type,
    -- The state API gives Ray's error messages without the terminal colours the event stream keeps.
    regexp_replace(error.errorMessage, chr(27) || '\\[[0-9;]*m', '', 'g') AS error_message,
    rh_ms(creation_ns) AS creation_time_ms,
    rh_ms(start_ns) AS start_time_ms,
    rh_ms(end_ns) AS end_time_ms,
    rh_ms(end_ns) - rh_ms(start_ns) AS duration_ms,
    creation_ns AS creation_time_ns,
    start_ns AS start_time_ns,
    end_ns AS end_time_ns,
    nullif({_state_times()}, '{{}}') AS state_times,
    CASE WHEN log IS NOT NULL THEN to_json({{
        'stdout_file': log.stdoutFile, 'stderr_file': log.stderrFile, 'stdout_start': log.stdoutStart,
        'stdout_end': log.stdoutEnd, 'stderr_start': log.stderrStart, 'stderr_end': log.stderrEnd}})::VARCHAR
    END AS task_log_info,
    call_site,
    label_selector,
    attempt_number > 0 AS is_retry,
    end_unknown,
    CASE WHEN end_unknown THEN
        'Ray reported no end of this attempt (its last reported state was ' || reported_state || ') before the '
        || 'session ended' || coalesce(' (' || session_reason || ')', '') || '. '
        || CASE WHEN job_finished_ns <= session_end_ns
                THEN 'Its job''s driver exited at '
                     || strftime(make_timestamp(job_finished_ns // 1000), '%Y-%m-%d %H:%M:%S UTC')
                     || ', so it had ended by then, '
                ELSE 'It may have finished, failed, or been stopped by the end of the cluster: ' END
        || 'Ray drops task events when its buffers overflow (see the session''s incomplete counts).'
    END AS end_unknown_reason
FROM final
"""


# --- actors --------------------------------------------------------------------------------------------

ACTORS = f"""
WITH
definition AS (
    SELECT actor_id, arg_min(job_id, timestamp) AS job_id,
           arg_min(json_transform(payload, {ACTOR_DEFINITION}).actorDefinitionEvent, timestamp) AS d
    FROM events
    WHERE event_type = 'ACTOR_DEFINITION_EVENT' AND actor_id IS NOT NULL
    GROUP BY actor_id
),
transitions AS (
    SELECT DISTINCT actor_id, t.state, rh_ns(t.timestamp) AS ns, rh_b64_id(t.nodeId) AS node_id,
           rh_b64_id(t.workerId) AS worker_id, nullif(t.pid, 0) AS pid, nullif(t.reprName, '') AS repr_name,
           t.deathCause AS death_cause
    FROM (SELECT actor_id, unnest(json_transform(payload, {ACTOR_LIFECYCLE}).actorLifecycleEvent.stateTransitions) AS t
          FROM events
          WHERE event_type = 'ACTOR_LIFECYCLE_EVENT' AND actor_id IS NOT NULL)
),
first_reports AS (
    SELECT actor_id, state, min(ns) AS ns FROM transitions WHERE state IS NOT NULL GROUP BY ALL
),
lifecycle AS (
    -- DEAD is final (Ray reports it twice, the second a moment later): it wins over any later report.
    SELECT actor_id,
           arg_max(state, (state = 'DEAD', ns)) AS state,
           arg_max(node_id, ns) FILTER (node_id IS NOT NULL) AS node_id,
           arg_max(worker_id, ns) FILTER (worker_id IS NOT NULL) AS worker_id,
           arg_max(pid, ns) FILTER (pid IS NOT NULL) AS pid,
           arg_max(repr_name, ns) FILTER (repr_name IS NOT NULL) AS repr_name,
           arg_min(death_cause, ns) FILTER (state = 'DEAD' AND death_cause IS NOT NULL) AS death_cause,
           min(ns) FILTER (state = 'ALIVE') AS start_ns,
           min(ns) FILTER (state = 'DEAD') AS end_ns,
           count(DISTINCT ns) FILTER (state = 'RESTARTING') AS num_restarts
    FROM transitions
    GROUP BY actor_id
),
state_times AS (
    SELECT actor_id, rh_state_times(state, ns) AS state_times FROM first_reports GROUP BY actor_id
),
merged AS (
    SELECT coalesce(l.actor_id, def.actor_id) AS actor_id, def.job_id, def.d, l.* EXCLUDE (actor_id),
           st.state_times, coalesce(l.state, 'DEPENDENCIES_UNREADY') AS reported_state,
           s.closed AND coalesce(l.state, '') <> 'DEAD' AS end_unknown, s.reason AS session_reason
    FROM lifecycle AS l
    FULL JOIN definition AS def USING (actor_id)
    LEFT JOIN state_times AS st USING (actor_id)
    CROSS JOIN rh_session_end AS s
)
SELECT
    actor_id,
    d.className AS class_name,
    d.name AS name,
    d.rayNamespace AS ray_namespace,
    rh_id(job_id) AS job_id,
    reported_state AS state,
    node_id,
    worker_id,
    pid::INTEGER AS pid,
    rh_b64_id(d.placementGroupId) AS placement_group_id,
    d.requiredResources AS required_resources,
    d.isDetached AS is_detached,
    coalesce(repr_name, '') AS repr_name,
    death_cause,
    coalesce(
        json_extract_string(death_cause, '$.actorDiedErrorContext.errorMessage'),
        json_extract_string(death_cause, '$.creationTaskFailureContext.formattedExceptionString'),
        json_extract_string(death_cause, '$.runtimeEnvFailedContext.errorMessage'),
        json_extract_string(death_cause, '$.actorUnschedulableContext.errorMessage'),
        json_extract_string(death_cause, '$.oomContext.errorMessage')) AS error_message,
    rh_ms(start_ns) AS start_time_ms,
    -- An end nobody reported stays unknown: no time is made up for it.
    rh_ms(end_ns) AS end_time_ms,
    coalesce(num_restarts, 0)::INTEGER AS num_restarts,
    state_times,
    d.serializedRuntimeEnv AS serialized_runtime_env,
    nullif(d.callSite, '') AS call_site,
    d.labelSelector AS label_selector,
    end_unknown,
    CASE WHEN end_unknown THEN
        'Ray reported no death of this actor (its last reported state was ' || reported_state || ') before the '
        || 'session ended' || coalesce(' (' || session_reason || ')', '') || ': it was stopped then at the latest.'
    END AS end_unknown_reason
FROM merged
ORDER BY actor_id
"""


# --- jobs ----------------------------------------------------------------------------------------------

# Each driver as its own events tell it (jobs and workers both list drivers). The GCS reports every driver
# except those in Ray's internal namespaces.
DRIVER_JOBS = f"""
CREATE OR REPLACE TEMP TABLE rh_driver_jobs AS
WITH
definition AS (
    SELECT job_id, arg_min(submission_id, timestamp) AS submission_id, arg_min(rh_id(node_id), timestamp) AS node_id,
           arg_min(json_transform(payload, {DRIVER_JOB_DEFINITION}).driverJobDefinitionEvent, timestamp) AS d
    FROM events
    WHERE event_type = 'DRIVER_JOB_DEFINITION_EVENT' AND job_id IS NOT NULL
    GROUP BY job_id
),
transitions AS (
    SELECT job_id, t.state, rh_ns(t.timestamp) AS ns
    FROM (SELECT job_id,
                 unnest(json_transform(payload, {DRIVER_JOB_LIFECYCLE}).driverJobLifecycleEvent.stateTransitions) AS t
          FROM events
          WHERE event_type = 'DRIVER_JOB_LIFECYCLE_EVENT' AND job_id IS NOT NULL)
),
lifecycle AS (
    SELECT job_id, min(ns) FILTER (state = 'CREATED') AS created_ns, min(ns) FILTER (state = 'FINISHED') AS finished_ns
    FROM transitions
    GROUP BY job_id
)
SELECT job_id, submission_id, node_id, d, created_ns, finished_ns
FROM definition
FULL JOIN lifecycle USING (job_id)
"""

JOBS = f"""
WITH
submission_reports AS (  -- the job manager's status of each submission, from its export file and the dashboard
    SELECT submission_id, epoch_ns(timestamp) AS observed_ns, s.status, s.entrypoint, s.message, s.error_type,
           s.start_time, s.end_time, s.metadata, s.runtime_env_json AS runtime_env, s.driver_agent_http_address,
           rh_id(lower(s.driver_node_id)) AS driver_node_id, s.driver_exit_code, NULL::VARCHAR AS job_id
    FROM (SELECT submission_id, timestamp, json_transform(payload, {SUBMISSION_STATUS}).event_data AS s
          FROM events
          WHERE event_type = 'EXPORT_SUBMISSION_JOB' AND submission_id IS NOT NULL)
    UNION ALL
    SELECT submission_id, epoch_ns(timestamp), j.status, j.entrypoint, j.message, j.error_type,
           j.start_time, j.end_time, j.metadata, j.runtime_env::VARCHAR, j.driver_agent_http_address,
           rh_id(lower(j.driver_node_id)), j.driver_exit_code, job_id
    FROM (SELECT submission_id, job_id, timestamp, json_transform(payload, {DASHBOARD_JOB}) AS j
          FROM events
          WHERE event_type = 'DASHBOARD_JOB' AND submission_id IS NOT NULL)
),
submissions AS (
    -- The latest report wins, but a final status wins over any other: the export file's times are whole
    -- seconds, so PENDING, RUNNING and FAILED can share one; the status order breaks the remaining ties.
    SELECT submission_id,
           arg_max(submission_reports, (
               status IN ('STOPPED', 'SUCCEEDED', 'FAILED'), observed_ns,
               list_position(['PENDING', 'RUNNING', 'STOPPED', 'SUCCEEDED', 'FAILED'], status))) AS s,
           max(job_id) AS listed_job_id
    FROM submission_reports
    GROUP BY submission_id
),
dashboard_drivers AS (  -- the dashboard's own list, for drivers whose events are missing
    SELECT job_id, arg_max(json_transform(payload, {DASHBOARD_JOB}), timestamp) AS j
    FROM events
    WHERE event_type = 'DASHBOARD_JOB' AND submission_id IS NULL AND job_id IS NOT NULL
    GROUP BY job_id
),
submission_jobs AS (
    SELECT sub.submission_id,
           -- Ray's convention when a submission started more than one driver: the last one (by job id).
           coalesce((SELECT max(dj.job_id) FROM rh_driver_jobs AS dj WHERE dj.submission_id = sub.submission_id),
                    sub.listed_job_id) AS job_id,
           sub.s
    FROM (SELECT submission_id, s, listed_job_id FROM submissions
          UNION ALL
          SELECT DISTINCT submission_id, NULL, NULL FROM rh_driver_jobs
          WHERE submission_id IS NOT NULL AND submission_id NOT IN (SELECT submission_id FROM submissions)) AS sub
),
referenced_jobs AS (  -- jobs known only from their tasks, actors and workers: drivers the GCS keeps quiet about
    SELECT DISTINCT job_id FROM events WHERE event_type = 'TASK_DEFINITION_EVENT' AND job_id IS NOT NULL
    UNION SELECT DISTINCT job_id FROM events WHERE event_type = 'ACTOR_DEFINITION_EVENT' AND job_id IS NOT NULL
    UNION SELECT DISTINCT job_id FROM events WHERE event_type = 'WORKER_LIFECYCLE_EVENT' AND job_id IS NOT NULL
),
listing AS (
    SELECT sj.job_id, sj.submission_id, 'SUBMISSION' AS type, false AS is_hidden,
           coalesce(sj.s.status, CASE WHEN dj.finished_ns IS NOT NULL THEN 'SUCCEEDED' ELSE 'RUNNING' END) AS status,
           coalesce(sj.s.entrypoint, dj.d.entrypoint) AS entrypoint, sj.s.message, sj.s.error_type,
           coalesce(sj.s.start_time, rh_ms(dj.created_ns)) AS start_ms,
           coalesce(sj.s.end_time, rh_ms(dj.finished_ns)) AS end_ms,
           coalesce(sj.s.metadata, dj.d.config.metadata) AS metadata,
           coalesce(sj.s.runtime_env, dj.d.config.serializedRuntimeEnv) AS runtime_env,
           coalesce(sj.s.driver_node_id, dj.node_id) AS driver_node_id, dj.d.driverPid AS driver_pid,
           sj.s.driver_exit_code, sj.s.driver_agent_http_address
    FROM submission_jobs AS sj
    LEFT JOIN rh_driver_jobs AS dj USING (job_id)
    UNION ALL
    -- Ray calls a driver of its own SUCCEEDED once it is dead: it has no exit code to say otherwise.
    SELECT job_id, NULL, 'DRIVER', false,
           CASE WHEN dj.finished_ns IS NOT NULL THEN 'SUCCEEDED' ELSE coalesce(dd.j.status, 'RUNNING') END,
           coalesce(dj.d.entrypoint, dd.j.entrypoint), dd.j.message, dd.j.error_type,
           coalesce(rh_ms(dj.created_ns), dd.j.start_time), coalesce(rh_ms(dj.finished_ns), dd.j.end_time),
           coalesce(dj.d.config.metadata, dd.j.metadata),
           coalesce(dj.d.config.serializedRuntimeEnv, dd.j.runtime_env::VARCHAR),
           coalesce(dj.node_id, rh_id(lower(dd.j.driver_node_id))), coalesce(dj.d.driverPid, dd.j.driver_info.pid),
           dd.j.driver_exit_code, dd.j.driver_agent_http_address
    FROM (SELECT * FROM rh_driver_jobs WHERE submission_id IS NULL) AS dj
    FULL JOIN dashboard_drivers AS dd USING (job_id)
    UNION ALL
    -- /api/jobs/ hides drivers in Ray's internal namespaces (the dashboard's own, its subprocesses'); the
    -- GCS sends no driver events for exactly those, so a job seen only through its tasks, actors and
    -- workers is one of them. Nothing is known of its status.
    SELECT job_id, NULL, 'DRIVER', true, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM referenced_jobs
    WHERE rh_id(job_id) IS NOT NULL
      AND job_id NOT IN (SELECT job_id FROM rh_driver_jobs WHERE job_id IS NOT NULL)
      AND job_id NOT IN (SELECT job_id FROM dashboard_drivers)
      AND job_id NOT IN (SELECT job_id FROM submission_jobs WHERE job_id IS NOT NULL)
),
nodes AS (
    SELECT node_id, arg_max(json_extract_string(payload, '$.nodeDefinitionEvent.nodeIpAddress'), timestamp) AS node_ip
    FROM events
    WHERE event_type = 'NODE_DEFINITION_EVENT' AND node_id IS NOT NULL
    GROUP BY node_id
),
merged AS (
    SELECT l.*, n.node_ip,
           s.closed AND l.status IN ('PENDING', 'RUNNING') AS cut_short,
           s.end_ns AS session_end_ns, s.reason AS session_reason, s.error_type AS cut_error_type
    FROM listing AS l
    LEFT JOIN nodes AS n ON n.node_id = l.driver_node_id
    CROSS JOIN rh_session_end AS s
)
SELECT
    job_id,
    submission_id,
    type,
    CASE WHEN cut_short THEN 'FAILED' ELSE status END AS status,
    entrypoint,
    CASE WHEN cut_short
         THEN 'The cluster ended' || coalesce(' (' || session_reason || ')', '')
              || ' while the job was ' || status || '.'
         ELSE message END AS message,
    CASE WHEN cut_short THEN cut_error_type ELSE error_type END AS error_type,
    start_ms AS start_time_ms,
    CASE WHEN cut_short THEN rh_ms(session_end_ns) ELSE end_ms END AS end_time_ms,
    metadata::VARCHAR AS metadata,
    runtime_env,
    driver_node_id,
    node_ip AS driver_ip_address,
    driver_pid,
    driver_exit_code,
    driver_agent_http_address,
    is_hidden
FROM merged
ORDER BY is_hidden, start_time_ms NULLS LAST, job_id, submission_id
"""


# --- nodes ---------------------------------------------------------------------------------------------

NODES = f"""
WITH
definition AS (
    SELECT node_id, arg_max(json_transform(payload, {NODE_DEFINITION}).nodeDefinitionEvent, timestamp) AS d
    FROM events
    WHERE event_type = 'NODE_DEFINITION_EVENT' AND node_id IS NOT NULL
    GROUP BY node_id
),
transitions AS (
    SELECT node_id, t.state, rh_ns(t.timestamp) AS ns, t.resources, t.deathInfo AS death_info
    FROM (SELECT node_id, unnest(json_transform(payload, {NODE_LIFECYCLE}).nodeLifecycleEvent.stateTransitions) AS t
          FROM events
          WHERE event_type = 'NODE_LIFECYCLE_EVENT' AND node_id IS NOT NULL)
),
lifecycle AS (
    SELECT node_id,
           arg_max(state, (state = 'DEAD', ns)) AS state,
           arg_max(resources, ns) FILTER (state = 'ALIVE' AND resources IS NOT NULL) AS resources,
           arg_min(death_info, ns) FILTER (state = 'DEAD') AS death_info,
           min(ns) FILTER (state = 'ALIVE') AS alive_ns,
           min(ns) FILTER (state = 'DEAD') AS dead_ns
    FROM transitions
    GROUP BY node_id
),
merged AS (
    SELECT coalesce(l.node_id, def.node_id) AS node_id, def.d, l.* EXCLUDE (node_id),
           s.closed AND coalesce(l.state, '') <> 'DEAD' AS cut_short,
           s.end_ns AS session_end_ns, s.reason AS session_reason
    FROM lifecycle AS l
    FULL JOIN definition AS def USING (node_id)
    CROSS JOIN rh_session_end AS s
)
SELECT
    node_id,
    d.nodeIpAddress AS node_ip,
    d.nodeName AS node_name,
    d.hostname AS hostname,
    -- Ray gives the head node, and only it, this resource.
    json_exists(resources, '$."node:__internal_head__"') AS is_head_node,
    CASE WHEN cut_short THEN 'DEAD' ELSE state END AS state,
    CASE WHEN cut_short
         THEN 'The cluster ended' || coalesce(' (' || session_reason || ')', '')
              || '; no DEAD event came from this node.'
         ELSE nullif(death_info.reasonMessage, '') END AS state_message,
    CASE WHEN cut_short THEN NULL ELSE death_info.reason END AS death_reason,
    resources AS resources_total,
    d.labels AS labels,
    nullif(d.instanceId, '') AS instance_id,
    nullif(d.instanceTypeName, '') AS instance_type_name,
    coalesce(rh_ms(rh_ns(d.startTimestamp)), rh_ms(alive_ns)) AS start_time_ms,
    rh_ms(CASE WHEN cut_short THEN session_end_ns ELSE dead_ns END) AS end_time_ms
FROM merged
ORDER BY start_time_ms NULLS LAST, node_id
"""


# --- workers -------------------------------------------------------------------------------------------

WORKERS = f"""
WITH
definition AS (
    SELECT worker_id, arg_min(rh_id(node_id), timestamp) AS node_id,
           arg_min(json_transform(payload, {WORKER_DEFINITION}).workerDefinitionEvent, timestamp) AS d
    FROM events
    WHERE event_type = 'WORKER_DEFINITION_EVENT' AND worker_id IS NOT NULL
    GROUP BY worker_id
),
transitions AS (
    SELECT worker_id, job_id, t.state, rh_ns(t.timestamp) AS ns,
           rh_time_ms(t.workerLaunchTimeMs) AS launch_ms, rh_time_ms(t.workerLaunchedTimeMs) AS launched_ms,
           rh_time_ms(t.startTimeMs) AS start_ms, rh_time_ms(t.endTimeMs) AS end_ms, t.deathInfo AS death_info
    FROM (SELECT worker_id, rh_id(job_id) AS job_id,
                 unnest(json_transform(payload, {WORKER_LIFECYCLE}).workerLifecycleEvent.stateTransitions) AS t
          FROM events
          WHERE event_type = 'WORKER_LIFECYCLE_EVENT' AND worker_id IS NOT NULL)
),
lifecycle AS (
    SELECT worker_id,
           arg_max(job_id, ns) FILTER (job_id IS NOT NULL) AS job_id,
           arg_max(state, (state = 'DEAD', ns)) AS state,
           min(launch_ms) AS launch_ms, min(launched_ms) AS launched_ms, min(start_ms) AS start_ms,
           max(end_ms) AS end_ms,
           arg_min(death_info, ns) FILTER (state = 'DEAD') AS death_info
    FROM transitions
    GROUP BY worker_id
),
workers AS (
    SELECT coalesce(l.worker_id, def.worker_id) AS worker_id, def.d.workerType AS worker_type, def.node_id,
           def.d.pid, l.job_id, l.state = 'ALIVE' AS is_alive, l.death_info.exitType AS exit_type,
           l.death_info.exitDetail AS exit_detail, l.launch_ms, l.launched_ms, l.start_ms, l.end_ms
    FROM lifecycle AS l
    FULL JOIN definition AS def USING (worker_id)
),
drivers AS (  -- the GCS sends no worker events for drivers: their jobs' events stand in, as the state API lists them
    SELECT job_id || repeat('f', 48) AS worker_id, 'DRIVER' AS worker_type, node_id, d.driverPid AS pid, job_id,
           finished_ns IS NULL AS is_alive, NULL AS exit_type, NULL AS exit_detail, NULL::BIGINT AS launch_ms,
           NULL::BIGINT AS launched_ms, rh_ms(created_ns) AS start_ms, rh_ms(finished_ns) AS end_ms
    FROM rh_driver_jobs
),
merged AS (
    SELECT w.*, s.closed AND coalesce(w.is_alive, false) AS cut_short,
           s.end_ns AS session_end_ns, s.reason AS session_reason, s.error_type AS cut_error_type
    FROM (SELECT * FROM workers UNION ALL BY NAME SELECT * FROM drivers) AS w
    CROSS JOIN rh_session_end AS s
)
SELECT
    worker_id,
    worker_type,
    node_id,
    pid::INTEGER AS pid,
    job_id,
    CASE WHEN cut_short THEN false ELSE is_alive END AS is_alive,
    CASE WHEN cut_short THEN cut_error_type ELSE exit_type END AS exit_type,
    CASE WHEN cut_short
         THEN 'The cluster ended' || coalesce(' (' || session_reason || ')', '') || ' while the worker was alive.'
         ELSE exit_detail END AS exit_detail,
    launch_ms AS worker_launch_time_ms,
    launched_ms AS worker_launched_time_ms,
    start_ms AS start_time_ms,
    CASE WHEN cut_short THEN rh_ms(session_end_ns) ELSE end_ms END AS end_time_ms
FROM merged
ORDER BY start_time_ms NULLS LAST, worker_id
"""


# --- placement groups ----------------------------------------------------------------------------------

PLACEMENT_GROUPS = f"""
WITH latest AS (
    SELECT placement_group_id, arg_max(job_id, timestamp) AS creator_job_id,
           rh_ms(max(epoch_ns(timestamp))) AS observed_ms,
           arg_max(json_transform(payload, {PLACEMENT_GROUP}), timestamp) AS g
    FROM events
    WHERE event_type = 'DASHBOARD_PLACEMENT_GROUP' AND placement_group_id IS NOT NULL
    GROUP BY placement_group_id
)
SELECT placement_group_id, g.name, creator_job_id, g.state, g.strategy, g.bundles, g.is_detached, g.stats,
       observed_ms AS observed_at_ms
FROM latest
ORDER BY placement_group_id
"""


# --- task profile events -------------------------------------------------------------------------------

_DEDUPLICATE = "/* one row per event id */"

# A re-sent batch would double every span. The collector already drops the batches it remembers, so
# duplicates are rare, and looking for them costs far less than removing them. (Two ids with one 64-bit
# hash only take the slower path, which is right either way.)
DUPLICATE_PROFILE_EVENTS = """
SELECT count(*) > count(DISTINCT hash(event_id)) FROM events WHERE event_type = 'TASK_PROFILE_EVENT'
"""

TASK_PROFILE_EVENTS = f"""
WITH
profile AS (
    SELECT task_id, task_attempt, rh_id(job_id) AS job_id, source_node_id AS node_id, p.componentType AS component_type,
           p.nodeIpAddress AS node_ip_address, rh_b64_id(p.componentId) AS worker_id, p.events
    FROM (SELECT *, json_transform(payload, {TASK_PROFILE}).taskProfileEvents.profileEvents AS p
          FROM events
          WHERE event_type = 'TASK_PROFILE_EVENT'
          {_DEDUPLICATE})
),
spans AS (
    SELECT * EXCLUDE (events), unnest(events) AS e FROM profile
)
SELECT
    task_id,
    task_attempt AS attempt_number,
    job_id,
    node_id,
    worker_id,
    component_type,
    node_ip_address,
    e.eventName AS event_name,
    try_cast(e.startTime AS BIGINT) AS start_time_ns,
    try_cast(e.endTime AS BIGINT) AS end_time_ns,
    nullif(e.extraData, '') AS extra_data
FROM spans
"""


def task_profile_events_query(con: duckdb.DuckDBPyConnection) -> str:
    """The profile query, keeping one row per event id only when some event id repeats."""
    [(duplicated,)] = con.sql(DUPLICATE_PROFILE_EVENTS).fetchall()
    keep_once = "QUALIFY row_number() OVER (PARTITION BY event_id) = 1" if duplicated else ""
    return TASK_PROFILE_EVENTS.replace(_DEDUPLICATE, keep_once)


QUERIES: dict[str, str] = {
    "tasks": TASKS,
    "actors": ACTORS,
    "jobs": JOBS,
    "nodes": NODES,
    "workers": WORKERS,
    "placement_groups": PLACEMENT_GROUPS,
}


# --- death causes as the state API gives them ----------------------------------------------------------

# Byte fields of Ray's ActorDeathCause: base64 on the wire, hex in the state API.
_DEATH_CAUSE_IDS = frozenset({"ownerId", "actorId"})


def _snake(name: str) -> str:
    return "".join("_" + char.lower() if char.isupper() else char for char in name)


def api_death_cause(value: Any) -> Any:
    """A death cause as Ray sent it (proto JSON) in the state API's form: snake_case keys, hex ids."""
    if isinstance(value, dict):
        converted: dict[str, Any] = {}
        for key, item in value.items():
            if key in _DEATH_CAUSE_IDS and isinstance(item, str):
                with contextlib.suppress(BadId):  # not an id after all: kept as Ray wrote it
                    item = b64_to_hex(item)
            converted[_snake(key)] = api_death_cause(item)
        return converted
    if isinstance(value, list):
        return [api_death_cause(item) for item in value]
    return value


def _convert_column(table: pa.Table, name: str, convert: Callable[[str], str]) -> pa.Table:
    index = table.schema.get_field_index(name)
    values = [None if text is None else convert(text) for text in table.column(index).to_pylist()]
    return table.set_column(index, table.schema.field(index), pa.array(values, pa.string()))


def _with_api_death_causes(actors: pa.Table) -> pa.Table:
    # Actors are few (a session has thousands at most), so Python is fine here.
    def convert(text: str) -> str:
        return msgspec.json.encode(api_death_cause(msgspec.json.decode(text))).decode()

    return _convert_column(actors, "death_cause", convert)
