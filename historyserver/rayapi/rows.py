"""The SQL this package runs over a session's snapshot and logs, and each snapshot row turned into the
record Ray's state API answers (Ray's names, types and nesting). Our /api/v1 keeps its own names."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import duckdb
import msgspec

from archive.events import rebuild_event

from .. import queries
from .filters import sql
from .resources import TASKS, Resource

# Ray's TaskStatus numbers: a task's `events` list its states in this order (protobuf_to_task_state_dict).
TASK_STATUS_ORDER = ("NIL", "PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "PENDING_OBJ_STORE_MEM_AVAIL",
                     "PENDING_ARGS_FETCH", "SUBMITTED_TO_WORKER", "PENDING_ACTOR_TASK_ARGS_FETCH",
                     "PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY", "RUNNING", "RUNNING_IN_RAY_GET",
                     "RUNNING_IN_RAY_WAIT", "FINISHED", "FAILED", "GETTING_AND_PINNING_ARGS")  # fmt: skip
STATUS_RANK = {state: rank for rank, state in enumerate(TASK_STATUS_ORDER)}


def _json(value: Any) -> Any:
    """A JSON column's value: decoded here, or already decoded by the query that read it."""
    if isinstance(value, str):
        return msgspec.json.decode(value) if value else None
    return value


def count(cur: duckdb.DuckDBPyConnection, resource: Resource, clauses: list[str], params: list[Any]) -> int:
    found = cur.execute(f'SELECT count(*) FROM "{resource.table}" t {sql(clauses)}', params).fetchone()
    return int(found[0]) if found else 0


def select(cur: duckdb.DuckDBPyConnection, resource: Resource, clauses: list[str], params: list[Any],
           limit: int | None) -> list[dict[str, Any]]:  # fmt: skip
    """The matching rows of our table (and, for workers and actors, their node's ip) in Ray's order."""
    node_ip = ", (SELECT any_value(n.node_ip) FROM nodes n WHERE n.node_id = t.node_id) AS _node_ip"
    extra = node_ip if resource.table in ("workers", "actors") else ""
    query = f'SELECT t.*{extra} FROM "{resource.table}" t {sql(clauses)} ORDER BY {resource.order}'
    query += " LIMIT ?" if limit is not None else ""
    result = cur.execute(query, [*params, limit] if limit is not None else params)
    names = [column[0] for column in result.description or []]
    return [dict(zip(names, values, strict=True)) for values in result.fetchall()]


def tasks_page(cur: duckdb.DuckDBPyConnection, ordering: queries.Ordering, clauses: list[str], params: list[Any],
               limit: int | None, detail: bool) -> tuple[int, list[dict[str, Any]]]:  # fmt: skip
    """(how many tasks match, the first `limit` of them in Ray's order). The matching rows' positions are
    kept per filter (`queries.Ordering`), so a list is a range of them and wide rows stay out of the sort;
    without detail only Ray's base columns are read, and those are ours as they are (no conversion)."""
    last = limit if limit is not None else 2**62
    total, ids = ordering.page(cur, sql(clauses), params, TASKS.order, last, 0)
    return total, queries.rows_by_id(cur, queries.TASKS, ids, None if detail else TASKS.base, WITHOUT_DEFINITION)


# Ray's columns of a task whose definition Ray never sent, as resources.TASKS gives them (strings its CLI reads).
WITHOUT_DEFINITION = {name: TASKS.columns[name][0] for name in ("type", "name", "func_or_class_name", "parent_task_id")}


def task_counts(cur: duckdb.DuckDBPyConnection, clauses: list[str], params: list[Any],
                ) -> list[tuple[str, str, str, str, int]]:  # fmt: skip
    """(name else function, the name's type, the tasks' own type, state, attempts) of the matching tasks: what
    Ray's summary by function counts, counted in DuckDB rather than by building every row (a million tasks:
    milliseconds). A name's type is its first task's in Ray's order (by id), as Ray's summary keeps the first
    it meets; its totals count each task's own type. Tasks whose definition Ray never sent count under ""
    (their name in the lists)."""
    query = f"""WITH matching AS (
                    SELECT coalesce(nullif(t.name, ''), t.func_or_class_name, '') AS key,
                           {TASKS.columns["type"][0]} AS type, t.state, t.task_id, t.attempt_number
                    FROM "tasks" t {sql(clauses)}),
                firsts AS (
                    SELECT key, first(type ORDER BY task_id, attempt_number) AS type,
                           min(task_id) AS first_id FROM matching GROUP BY key)
                SELECT m.key, any_value(f.type), m.type, m.state, count(*) FROM matching m JOIN firsts f USING (key)
                GROUP BY m.key, m.type, m.state ORDER BY any_value(f.first_id), m.type, m.state"""
    return [tuple(row) for row in cur.execute(query, params).fetchall()]  # type: ignore[misc]


def task(row: dict[str, Any]) -> dict[str, Any]:
    times = _json(row["state_times"]) or {}
    events = [{"state": state, "created_ms": times[state]}
              for state in sorted(times, key=lambda name: STATUS_RANK.get(name, len(STATUS_RANK)))]  # fmt: skip
    runtime_env = row["serialized_runtime_env"]
    return {
        "task_id": row["task_id"], "attempt_number": row["attempt_number"], "name": row["name"],
        "state": row["state"], "job_id": row["job_id"], "actor_id": row["actor_id"], "type": row["type"],
        "func_or_class_name": row["func_or_class_name"], "parent_task_id": row["parent_task_id"],
        "node_id": row["node_id"], "worker_id": row["worker_id"], "worker_pid": row["worker_pid"],
        "error_type": row["error_type"], "language": row["language"],
        "required_resources": _json(row["required_resources"]),
        # Ray adds runtime_env_config (setup timeout, eager install): the task events do not carry it.
        "runtime_env_info": {"serialized_runtime_env": runtime_env} if runtime_env is not None else None,
        "placement_group_id": row["placement_group_id"], "events": events,
        "profiling_data": {},  # filled from task_profile_events when detail is asked for
        "creation_time_ms": row["creation_time_ms"], "start_time_ms": row["start_time_ms"],
        "end_time_ms": row["end_time_ms"], "task_log_info": _json(row["task_log_info"]),
        "error_message": row["error_message"], "is_debugger_paused": None, "call_site": row["call_site"],
        "label_selector": _json(row["label_selector"]),
        # Ray 2.60 answers an empty fallback list for a task given none; the task events do not carry one.
        "fallback_strategy": {"options": []},
    }  # fmt: skip


def actor(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "actor_id": row["actor_id"], "class_name": row["class_name"], "state": row["state"], "job_id": row["job_id"],
        "name": row["name"], "node_id": row["node_id"], "pid": row["pid"], "ray_namespace": row["ray_namespace"],
        "serialized_runtime_env": row["serialized_runtime_env"],
        "required_resources": _json(row["required_resources"]), "death_cause": _json(row["death_cause"]),
        "is_detached": row["is_detached"], "placement_group_id": row["placement_group_id"],
        "repr_name": row["repr_name"],
        # int64 counters: Ray's protobuf-to-dict gives them as strings. Restarts by lineage reconstruction or
        # node preemption are not told apart in the events: all are counted in num_restarts.
        "num_restarts": str(row["num_restarts"] or 0), "num_restarts_due_to_lineage_reconstruction": "0",
        "num_restarts_due_to_node_preemption": "0", "call_site": row["call_site"],
        "label_selector": _json(row["label_selector"]), "fallback_strategy": None,
    }  # fmt: skip


def job(row: dict[str, Any]) -> dict[str, Any]:
    """A job as JobDetails gives it (/api/jobs/ and /api/v0/jobs)."""
    submission = row["type"] == "SUBMISSION"
    driver = None
    if row["job_id"] is not None:
        pid = row["driver_pid"]
        driver = {"id": row["job_id"], "node_ip_address": row["driver_ip_address"],
                  "pid": str(pid) if pid is not None else None}  # fmt: skip
    return {
        "type": row["type"], "job_id": row["job_id"], "submission_id": row["submission_id"], "driver_info": driver,
        "status": row["status"], "entrypoint": row["entrypoint"], "message": row["message"],
        "error_type": row["error_type"], "start_time": row["start_time_ms"], "end_time": row["end_time_ms"],
        "metadata": _json(row["metadata"]) or {}, "runtime_env": _json(row["runtime_env"]) or {},
        # Ray fills these from the job supervisor: a driver of its own (type DRIVER) has none.
        "driver_agent_http_address": row["driver_agent_http_address"] if submission else None,
        "driver_node_id": row["driver_node_id"] if submission else None,
        "driver_exit_code": row["driver_exit_code"] if submission else None,
    }  # fmt: skip


def node(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "node_id": row["node_id"], "node_ip": row["node_ip"], "is_head_node": row["is_head_node"],
        "state": row["state"], "state_message": row["state_message"], "node_name": row["node_name"],
        "resources_total": _json(row["resources_total"]) or {}, "labels": _json(row["labels"]) or {},
        "start_time_ms": row["start_time_ms"] or 0, "end_time_ms": row["end_time_ms"] or 0,  # Ray: 0 when unset
    }  # fmt: skip


def worker(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "worker_id": row["worker_id"], "is_alive": row["is_alive"], "worker_type": row["worker_type"],
        "exit_type": row["exit_type"], "node_id": row["node_id"], "ip": row["_node_ip"], "pid": row["pid"],
        "exit_detail": row["exit_detail"], "worker_launch_time_ms": row["worker_launch_time_ms"],
        "worker_launched_time_ms": row["worker_launched_time_ms"], "start_time_ms": row["start_time_ms"] or 0,
        "end_time_ms": row["end_time_ms"] or 0, "debugger_port": None, "num_paused_threads": None,
    }  # fmt: skip


def placement_group(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "placement_group_id": row["placement_group_id"], "name": row["name"], "creator_job_id": row["creator_job_id"],
        "state": row["state"], "bundles": _json(row["bundles"]), "is_detached": row["is_detached"],
        "stats": _json(row["stats"]),
        # Not kept by the collector's poll (label-based scheduling only): Ray's answer without them.
        "topology_strategy": {}, "topology_assignments": {},
    }  # fmt: skip


CONVERT: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "tasks": task, "actors": actor, "jobs": job, "nodes": node, "workers": worker, "placement_groups": placement_group,
}  # fmt: skip


def profiling(cur: duckdb.DuckDBPyConnection, attempts: list[tuple[str, int]]) -> dict[tuple[str, int], dict]:
    """Each attempt's `profiling_data` as Ray builds it: its worker's spans, times in float ms."""
    if not attempts:
        return {}
    sql_text = """SELECT p.task_id, p.attempt_number, p.component_type, p.worker_id, p.node_ip_address, p.event_name,
                         p.start_time_ns, p.end_time_ns, p.extra_data
                  FROM task_profile_events p
                  JOIN (SELECT unnest(?::VARCHAR[]) AS task_id, unnest(?::INTEGER[]) AS attempt_number) k
                    ON k.task_id = p.task_id AND k.attempt_number = p.attempt_number
                  ORDER BY p.task_id, p.attempt_number, p.start_time_ns"""
    found: dict[tuple[str, int], dict] = {}
    params = [[task_id for task_id, _ in attempts], [attempt for _, attempt in attempts]]
    for task_id, attempt, kind, worker_id, ip, name, start, end, extra in cur.execute(sql_text, params).fetchall():
        data = found.setdefault((task_id, attempt), {"component_type": kind, "component_id": worker_id,
                                                     "node_ip_address": ip, "events": []})  # fmt: skip
        data["events"].append({"start_time": start / 1e6 if start is not None else None,
                               "end_time": end / 1e6 if end is not None else None,
                               "extra_data": _json(extra) or {}, "event_name": name})  # fmt: skip
    return found


def legacy_events(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Ray's legacy events (logs/events/event_*.log, what /events answers), as the collector archived them:
    a LEGACY_EVENT row per line, rebuilt as the line Ray wrote, oldest first."""
    query = """SELECT event_id, event_type, source_type, payload FROM events WHERE event_type = 'LEGACY_EVENT'
               ORDER BY timestamp, event_id"""
    names = ("event_id", "event_type", "source_type", "payload")
    return [rebuild_event(dict(zip(names, row, strict=True))) for row in cur.execute(query).fetchall()]


def driver_log_file(cur: duckdb.DuckDBPyConnection, submission_id: str) -> str | None:
    """The file id of a submission's `job-driver-<submission_id>.log` (the newest, if several)."""
    found = cur.execute(
        "SELECT file_id FROM logs WHERE file = ? GROUP BY file_id ORDER BY max(read_at) DESC LIMIT 1",
        ["logs/job-driver-" + submission_id + ".log"],
    ).fetchall()
    return found[0][0] if found else None


def gcs_metadata(cur: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """`ray_version` and `ray_commit` from the GCS's start line ("Ray cluster metadata ray_version=...
    ray_commit=..."): the archive's one record of the commit, and of the version when the manifest lacks it."""
    found = cur.execute(
        """SELECT text FROM logs WHERE starts_with(file, 'logs/gcs_server.out')
           AND contains(text, 'Ray cluster metadata ray_version=') LIMIT 1"""
    ).fetchall()
    if not found:
        return {}
    return dict(re.findall(r"(ray_version|ray_commit)=(\S+)", found[0][0]))


def node_id_by_ip(cur: duckdb.DuckDBPyConnection, node_ip: str) -> str | None:
    """The node that had this ip (Ray resolves an ip among live nodes; here every node of the session)."""
    found = cur.execute("SELECT node_id FROM nodes WHERE node_ip = ? ORDER BY start_time_ms DESC LIMIT 1",
                        [node_ip]).fetchall()  # fmt: skip
    return found[0][0] if found else None


def latest_snapshot(cur: duckdb.DuckDBPyConnection, event_type: str) -> Any:
    """The newest answer the collector polled from the head's dashboard (a DASHBOARD_* row), or None."""
    found = cur.execute(
        "SELECT payload FROM events WHERE event_type = ? ORDER BY timestamp DESC, event_id DESC LIMIT 1", [event_type]
    ).fetchall()
    return _json(found[0][0]) if found else None


def dataset_metadata(cur: duckdb.DuckDBPyConnection, job_id: str) -> list[dict[str, Any]]:
    """The newest EXPORT_DATASET_METADATA record of each dataset of a job (Ray writes one per change)."""
    found = cur.execute(
        """SELECT payload FROM events WHERE event_type = 'EXPORT_DATASET_METADATA' AND job_id = ?
           ORDER BY timestamp, event_id""",
        [job_id.lower()],
    ).fetchall()
    newest: dict[str, dict[str, Any]] = {}
    for (payload,) in found:
        data = (_json(payload) or {}).get("event_data")
        if isinstance(data, dict) and isinstance(data.get("dataset_id"), str):
            newest[data["dataset_id"]] = data
    return list(newest.values())
