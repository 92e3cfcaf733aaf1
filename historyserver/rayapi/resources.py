"""Ray 2.60's state API resources (`ray.util.state.common`'s *State schemas) and how each is read from our
snapshot tables: Ray's column names, which are listed without `detail`, which can be filtered, their
types (for Ray's value conversion), the SQL giving each from our columns, and Ray's sort key."""

from __future__ import annotations

from dataclasses import dataclass

STR, INT, BOOL, OTHER = "str", "int", "bool", "other"


@dataclass(frozen=True)
class Resource:
    name: str  # the path segment: api/v0/{name}
    table: str  # our snapshot table
    base: tuple[str, ...]  # Ray's columns without detail, in Ray's order
    detail: tuple[str, ...]  # Ray's columns with detail, in Ray's order
    filterable: frozenset[str]
    # Ray column -> (SQL over our table, aliased `t`, and Ray's type for filter conversion)
    columns: dict[str, tuple[str, str]]
    order: str  # Ray sorts every list by its id ("to make the output deterministic")
    hidden: str = ""  # SQL true of rows the live dashboard never lists


# A task whose definition Ray never sent (its buffers overflow under bursts) has no type and no names, but
# Ray's CLI refuses a whole list where `type`, `name`, `func_or_class_name` or `parent_task_id` is not a
# string. Its type is what its id says (Ray's TaskID: 8 unique bytes, then the ActorID: 12 unique bytes and
# the JobID; a normal task's ActorID is nil, an actor creation task's unique bytes are); its names are
# unknown (""), and /api/v1 says why (`end_unknown_reason`, the summary's `tasks_without_definition`).
TASK_TYPE = """coalesce(t.type, CASE WHEN substr(t.task_id, 17, 24) = repeat('f', 24) THEN 'NORMAL_TASK'
                                     WHEN starts_with(t.task_id, repeat('f', 16)) THEN 'ACTOR_CREATION_TASK'
                                     ELSE 'ACTOR_TASK' END)"""


def _defined(column: str) -> str:
    return f"CASE WHEN t.type IS NULL THEN coalesce(t.{column}, '') ELSE t.{column} END"


TASK_BASE = ("task_id", "attempt_number", "name", "state", "job_id", "actor_id", "type", "func_or_class_name",
             "parent_task_id", "node_id", "worker_id", "worker_pid", "error_type")  # fmt: skip
TASKS = Resource(
    "tasks", "tasks", TASK_BASE,
    (*TASK_BASE, "language", "required_resources", "runtime_env_info", "placement_group_id", "events",
     "profiling_data", "creation_time_ms", "start_time_ms", "end_time_ms", "task_log_info", "error_message",
     "is_debugger_paused", "call_site", "label_selector", "fallback_strategy"),
    frozenset({"actor_id", "attempt_number", "error_type", "func_or_class_name", "is_debugger_paused", "job_id",
               "language", "name", "node_id", "parent_task_id", "placement_group_id", "state", "task_id", "type",
               "worker_id", "worker_pid"}),
    {"task_id": ("t.task_id", STR), "attempt_number": ("t.attempt_number", INT), "name": (_defined("name"), STR),
     "state": ("t.state", STR), "job_id": ("t.job_id", STR), "actor_id": ("t.actor_id", STR),
     "type": (TASK_TYPE, STR), "func_or_class_name": (_defined("func_or_class_name"), STR),
     "parent_task_id": (_defined("parent_task_id"), STR), "node_id": ("t.node_id", STR),
     "worker_id": ("t.worker_id", STR),
     "worker_pid": ("t.worker_pid", INT), "error_type": ("t.error_type", STR), "language": ("t.language", STR),
     "placement_group_id": ("t.placement_group_id", STR),
     # The events we archive do not say whether a debugger paused a task: Ray's answer when none did.
     "is_debugger_paused": ("NULL::BOOLEAN", BOOL)},
    "t.task_id, t.attempt_number",
)  # fmt: skip

ACTOR_BASE = ("actor_id", "class_name", "state", "job_id", "name", "node_id", "pid", "ray_namespace")
ACTORS = Resource(
    "actors", "actors", ACTOR_BASE,
    (*ACTOR_BASE, "serialized_runtime_env", "required_resources", "death_cause", "is_detached", "placement_group_id",
     "repr_name", "num_restarts", "num_restarts_due_to_lineage_reconstruction", "num_restarts_due_to_node_preemption",
     "call_site", "label_selector", "fallback_strategy"),
    frozenset({"actor_id", "class_name", "job_id", "name", "node_id", "pid", "placement_group_id", "ray_namespace",
               "repr_name", "state"}),
    {"actor_id": ("t.actor_id", STR), "class_name": ("t.class_name", STR), "job_id": ("t.job_id", STR),
     "name": ("t.name", STR), "node_id": ("t.node_id", STR), "pid": ("t.pid", INT),
     "placement_group_id": ("t.placement_group_id", STR), "ray_namespace": ("t.ray_namespace", STR),
     "repr_name": ("t.repr_name", STR), "state": ("t.state", STR)},
    "t.actor_id",
)  # fmt: skip

JOB_BASE = ("job_id", "submission_id", "entrypoint", "type", "status", "message", "error_type", "driver_info")
JOBS = Resource(
    "jobs", "jobs", JOB_BASE,
    ("type", "job_id", "submission_id", "driver_info", "status", "entrypoint", "message", "error_type", "start_time",
     "end_time", "metadata", "runtime_env", "driver_agent_http_address", "driver_node_id", "driver_exit_code"),
    frozenset({"job_id", "status", "submission_id", "type"}),
    {"job_id": ("t.job_id", STR), "status": ("t.status", STR), "submission_id": ("t.submission_id", STR),
     "type": ("t.type", STR)},
    "coalesce(t.job_id, ''), t.submission_id",
    # Ray's own drivers (the dashboard's, a job supervisor's): neither /api/jobs/ nor /api/v0/jobs lists them.
    "coalesce(t.is_hidden, false)",
)  # fmt: skip

NODE_BASE = ("node_id", "node_ip", "is_head_node", "state", "state_message", "node_name", "resources_total", "labels")
NODES = Resource(
    "nodes", "nodes", NODE_BASE, (*NODE_BASE, "start_time_ms", "end_time_ms"),
    frozenset({"is_head_node", "node_id", "node_ip", "node_name", "state"}),
    {"node_id": ("t.node_id", STR), "node_ip": ("t.node_ip", STR), "is_head_node": ("t.is_head_node", BOOL),
     "node_name": ("t.node_name", STR), "state": ("t.state", STR)},
    "t.node_id",
)  # fmt: skip

WORKER_BASE = ("worker_id", "is_alive", "worker_type", "exit_type", "node_id", "ip", "pid")
WORKER_IP = "(SELECT any_value(n.node_ip) FROM nodes n WHERE n.node_id = t.node_id)"
WORKERS = Resource(
    "workers", "workers", WORKER_BASE,
    (*WORKER_BASE, "exit_detail", "worker_launch_time_ms", "worker_launched_time_ms", "start_time_ms", "end_time_ms",
     "debugger_port", "num_paused_threads"),
    frozenset({"debugger_port", "exit_type", "ip", "is_alive", "node_id", "num_paused_threads", "pid", "worker_id",
               "worker_type"}),
    {"worker_id": ("t.worker_id", STR), "is_alive": ("t.is_alive", BOOL), "worker_type": ("t.worker_type", STR),
     "exit_type": ("t.exit_type", STR), "node_id": ("t.node_id", STR), "ip": (WORKER_IP, STR),
     "pid": ("t.pid", INT),
     # Debugger state is not in the events we archive: Ray's answer when no debugger was attached.
     "debugger_port": ("NULL::BIGINT", INT), "num_paused_threads": ("NULL::BIGINT", INT)},
    "t.worker_id",
)  # fmt: skip

PG_BASE = ("placement_group_id", "name", "creator_job_id", "state")
PLACEMENT_GROUPS = Resource(
    "placement_groups", "placement_groups", PG_BASE,
    (*PG_BASE, "bundles", "is_detached", "stats", "topology_strategy", "topology_assignments"),
    frozenset({"creator_job_id", "is_detached", "name", "placement_group_id", "state"}),
    {"placement_group_id": ("t.placement_group_id", STR), "name": ("t.name", STR),
     "creator_job_id": ("t.creator_job_id", STR), "state": ("t.state", STR), "is_detached": ("t.is_detached", BOOL)},
    "t.placement_group_id",
)  # fmt: skip

RESOURCES: dict[str, Resource] = {r.name: r for r in (TASKS, ACTORS, JOBS, NODES, WORKERS, PLACEMENT_GROUPS)}
