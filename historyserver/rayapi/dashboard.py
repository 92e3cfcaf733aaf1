"""The rest of what Ray 2.60's UI and CLI ask a dashboard: version, nodes, logical actors, cluster status
and metadata, legacy events, timezone, and the probes every page makes (Grafana, Prometheus, platform
events, authentication), answered for a finished session in the shapes Ray's handlers give."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..access import viewer_of
from ..sessions import OpenSession
from ..views.common import server_of, session_of_path
from . import rows
from .envelope import NOT_FOUND, OK, RayJSON, rest_response, to_google_style
from .resources import ACTORS, NODES

router = APIRouter()
VERSION = "4"  # ray.dashboard.modules.job.common.CURRENT_VERSION in 2.60
GRAFANA_DISABLED = "DISABLED"  # metrics_head.GRAFANA_HOST_DISABLED_VALUE: the UI hides Grafana panels


def _opened(request: Request) -> OpenSession:
    return session_of_path(request)


def _catalog_row(request: Request) -> dict[str, Any]:
    params = request.path_params
    server, viewer = server_of(request), viewer_of(request)
    return server.session_row(params["namespace"], params["cluster"], params["session"], viewer)


@router.get("/api/version", include_in_schema=False)
def version(request: Request) -> Response:
    row = _catalog_row(request)
    gcs = rows.gcs_metadata(_opened(request).cursor("logs"))
    return RayJSON({"version": VERSION, "ray_version": row.get("ray_version") or gcs.get("ray_version"),
                    "ray_commit": gcs.get("ray_commit"), "session_name": row["session"]})  # fmt: skip


def _nodes(opened: OpenSession) -> list[dict[str, Any]]:
    return rows.select(opened.cursor(), NODES, [], [], None)


def node_summary(row: dict[str, Any]) -> dict[str, Any]:
    """One entry of `nodes?view=summary` (DataOrganizer's node summary): what the archive knows of a node.
    Ray's answer for a dead node: its GCS record under `raylet`, an empty object store and no accelerator;
    live readings (cpu, mem, disk, network, processes) have no value after the fact and are left out, as
    Ray leaves them out once a node is dead. The host and ip the archive knows are kept."""
    node = rows.node(row)
    raylet = {
        "nodeId": node["node_id"], "nodeManagerAddress": node["node_ip"], "nodeManagerHostname": row["hostname"],
        "nodeName": node["node_name"], "isHeadNode": node["is_head_node"], "state": node["state"],
        "stateMessage": node["state_message"], "resourcesTotal": to_google_style(node["resources_total"]),
        "labels": node["labels"], "startTimeMs": str(node["start_time_ms"]), "endTimeMs": str(node["end_time_ms"]),
        "instanceId": row["instance_id"] or "", "instanceTypeName": row["instance_type_name"] or "",
        # Ray's object store reading: its raylet's store stats, none once the node is dead.
        "objectStoreUsedMemory": 0, "objectStoreAvailableMemory": 0,
    }  # fmt: skip
    return {"now": time.time(), "hostname": row["hostname"], "ip": node["node_ip"], "raylet": raylet, "tpus": []}


@router.get("/nodes", include_in_schema=False)
def nodes(request: Request, view: str | None = None) -> Response:
    opened = _opened(request)
    if view == "summary":
        summary = [node_summary(row) for row in _nodes(opened)]
        return rest_response(OK, "Node summary fetched.", google_style=False, summary=summary,
                             nodeLogicalResources={})  # fmt: skip
    if view is not None and view.lower() == "hostnamelist":
        # Ray lists the hosts of ALIVE nodes; every node of a finished session is dead, so the hosts it had.
        hosts = sorted({row["hostname"] or row["node_ip"] for row in _nodes(opened)} - {None})
        return rest_response(OK, "Node hostname list fetched.", host_name_list=hosts)
    # Ray answers 500 here; the request is what is wrong, and a 500 would read as the server's fault.
    return rest_response(400, f"Unknown view {view}")


@router.get("/nodes/{node_id}", include_in_schema=False)
def node_detail(request: Request, node_id: str) -> Response:
    opened = _opened(request)
    found = [row for row in _nodes(opened) if row["node_id"] == node_id]
    if not found:
        return rest_response(NOT_FOUND, f"Node {node_id} not found in this session.")
    # Ray's detail adds the node's worker processes (live ones only: none now; the state API lists the dead
    # ones) and the actors it placed there.
    actors = {actor_id: actor for actor_id, actor in _actors(request).items() if actor["address"]["nodeId"] == node_id}
    # A dead node sends and receives nothing; its load averages are not archived (the UI then shows none).
    detail = {**node_summary(found[0]), "workers": [], "actors": actors, "networkSpeed": [0, 0], "loadAvg": []}
    return rest_response(OK, "Node details fetched.", google_style=False, detail=detail)


def logical_actor(row: dict[str, Any]) -> dict[str, Any]:
    """An actor as /logical/actors gives it (camelCase, DataOrganizer's actor info)."""
    death = json.loads(row["death_cause"]) if row["death_cause"] else {}
    context = death.get("actor_died_error_context") or {}
    return {
        "actorId": row["actor_id"], "jobId": row["job_id"],
        # The port of the actor's worker is not in the events: null.
        "address": {"nodeId": row["node_id"], "ipAddress": row["_node_ip"], "port": None,
                    "workerId": row["worker_id"]},
        "name": row["name"] or "", "className": row["class_name"], "state": row["state"],
        "numRestarts": str(row["num_restarts"] or 0), "timestamp": row["end_time_ms"] or row["start_time_ms"],
        "pid": row["pid"], "startTime": row["start_time_ms"], "endTime": row["end_time_ms"],
        "reprName": row["repr_name"] or "", "actorClass": row["class_name"],
        "exitDetail": context.get("error_message") or row["error_message"],
        "requiredResources": json.loads(row["required_resources"]) if row["required_resources"] else {},
        "labelSelector": json.loads(row["label_selector"]) if row["label_selector"] else {},
        "placementGroupId": row["placement_group_id"], "isDetached": row["is_detached"],
        # Live readings of the actor's process: none after the fact.
        "gpus": [], "tpus": [], "processStats": None,
    }  # fmt: skip


def _actors(request: Request) -> dict[str, dict[str, Any]]:
    found = rows.select(_opened(request).cursor(), ACTORS, [], [], None)
    return {row["actor_id"]: logical_actor(row) for row in found}


@router.get("/logical/actors", include_in_schema=False)
def logical_actors(request: Request, ids: str | None = None) -> Response:
    actors = _actors(request)
    if ids is not None:
        actors = {actor_id: actors[actor_id] for actor_id in ids.split(",") if actor_id in actors}
    return rest_response(OK, "All actors fetched.", google_style=False, actors=actors)


@router.get("/logical/actors/{actor_id}", include_in_schema=False)
def logical_actor_detail(request: Request, actor_id: str) -> Response:
    actors = _actors(request)
    if actor_id not in actors:
        # Ray raises a KeyError (a 500); a 404 in the same envelope says what is wrong.
        return rest_response(NOT_FOUND, f"Actor {actor_id} not found in this session.")
    return rest_response(OK, "Actor details fetched.", google_style=False, detail=actors[actor_id])


@router.get("/api/cluster_status", include_in_schema=False)
def cluster_status(request: Request) -> Response:
    """The autoscaler's report as it would read at the end: every node's resources, none in use (nothing
    runs in a finished session), no demand. Ray reads this from the live autoscaler; it is not archived."""
    opened = _opened(request)
    nodes_ = [rows.node(row) for row in _nodes(opened)]
    usage_by_node = {node["node_id"]: {name: [0.0, float(amount)] for name, amount in node["resources_total"].items()}
                     for node in nodes_}  # fmt: skip
    usage: dict[str, list[float]] = {}
    for resources in usage_by_node.values():
        for name, (used, total) in resources.items():
            usage[name] = [usage.get(name, [0.0, 0.0])[0] + used, usage.get(name, [0.0, 0.0])[1] + total]
    alive = [node for node in nodes_ if node["state"] == "ALIVE"]
    lines = [f"Cluster status: {len(alive)} nodes"]
    lines += [" - ResourceUsage: " + ", ".join(f"{used:g}/{total:g} {name}" for name, (used, total) in usage.items()
                                                 if not name.startswith("node:"))]  # fmt: skip
    status = {
        "autoscalerReport": {"activeNodes": {}, "idleNodes": None, "pendingNodes": [], "pendingLaunches": {},
                             "failedNodes": [], "pendingResources": {}},
        "loadMetricsReport": {"usage": usage, "resourceDemand": [], "pgDemand": [], "requestDemand": [],
                              "usageByNode": usage_by_node},
    }  # fmt: skip
    # Resource names stay as Ray spells them in usage (Ray camel-cases the whole answer: so do we).
    return rest_response(OK, "Got cluster status.", autoscaling_status="\n".join(lines), autoscaling_error=None,
                         cluster_status=status)  # fmt: skip


@router.get("/api/v0/cluster_metadata", include_in_schema=False)
def cluster_metadata(request: Request) -> Response:
    """What Ray keeps in its KV store at start (ray_version, session start...), from the manifest."""
    row = _catalog_row(request)
    ray_version = row.get("ray_version") or rows.gcs_metadata(_opened(request).cursor("logs")).get("ray_version")
    return rest_response(OK, "", ray_version=ray_version, session_name=row["session"],
                         session_start_timestamp_ms=row.get("start_time_ms"))  # fmt: skip


@router.get("/events", include_in_schema=False)
def events(request: Request, job_id: str | None = None) -> Response:
    """Ray's legacy events (logs/events/event_*.log), grouped by job ("global" when none), as event_head."""
    grouped = group_events(rows.legacy_events(_opened(request).cursor("events")))
    if job_id is None:
        all_events = {owner: list(found.values()) for owner, found in grouped.items()}
        return rest_response(OK, "All events fetched.", events=all_events)
    return rest_response(OK, "Job events fetched.", job_id=job_id, events=list(grouped.get(job_id, {}).values()))


def group_events(events: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """event_head's `_update_events`: job id (or "global") -> event id -> event, the last copy kept."""
    grouped: dict[str, dict[str, dict[str, Any]]] = {}
    for event in events:
        owner = (event.get("custom_fields") or {}).get("job_id") or "global"
        grouped.setdefault(owner, {})[event["event_id"]] = event
    return grouped


# Ray's timezone_utils table: the server's UTC offset -> the zone name Ray's UI formats times in.
TIMEZONES = {"-12:00": "Etc/+12", "-11:00": "Pacific/Pago_Pago", "-10:00": "Pacific/Honolulu",
             "-09:00": "America/Anchorage", "-08:00": "America/Los_Angeles", "-07:00": "America/Phoenix",
             "-06:00": "America/Guatemala", "-05:00": "America/Bogota", "-04:00": "America/Halifax",
             "-03:30": "America/St_Johns", "-03:00": "America/Sao_Paulo", "-02:00": "America/Godthab",
             "-01:00": "Atlantic/Azores", "+00:00": "Europe/London", "+01:00": "Europe/Amsterdam",
             "+02:00": "Asia/Amman", "+03:00": "Asia/Baghdad", "+03:30": "Asia/Tehran", "+04:00": "Asia/Dubai",
             "+04:30": "Asia/Kabul", "+05:00": "Asia/Karachi", "+05:30": "Asia/Kolkata", "+05:45": "Asia/Kathmandu",
             "+06:00": "Asia/Almaty", "+06:30": "Asia/Yangon", "+07:00": "Asia/Bangkok", "+08:00": "Asia/Shanghai",
             "+09:00": "Asia/Irkutsk", "+09:30": "Australia/Adelaide", "+10:00": "Australia/Brisbane",
             "+11:00": "Asia/Magadan", "+12:00": "Pacific/Auckland", "+13:00": "Pacific/Tongatapu"}  # fmt: skip


@router.get("/timezone", include_in_schema=False)
def timezone() -> Response:
    """`get_current_timezone_info`: this server's zone, as Ray answers its own."""
    offset = datetime.now().astimezone().utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    text = f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    value = TIMEZONES.get(text)
    return RayJSON({"offset": text if value else None, "value": value})


@router.get("/api/grafana_health", include_in_schema=False)
def grafana_health() -> Response:
    """Ray's answer when Grafana is turned off: the UI then hides its Grafana panels, with no banner."""
    return rest_response(OK, "Grafana disabled", grafana_host=GRAFANA_DISABLED)


@router.get("/api/prometheus_health", include_in_schema=False)
def prometheus_health() -> Response:
    """Not healthy: a finished session has no Prometheus (its samples are in the archive, under /api/v1).
    Ray answers this as a 500; the UI reads only `result`, so a 200 saying false spares a console error."""
    return RayJSON({"result": False, "msg": "prometheus healthcheck failed.",
                    "data": {"reason": "a finished session has no Prometheus"}})  # fmt: skip


@router.api_route("/api/v0/platform_events", methods=["GET", "HEAD"], include_in_schema=False)
def platform_events() -> Response:
    """No platform (Kubernetes) events are archived: the list is empty, as a live cluster without any."""
    return rest_response(OK, "Retrieved platform events", events=[])


@router.get("/api/profiling_enabled", include_in_schema=False)
def profiling_enabled() -> Response:
    """Off, as Ray's default (RAY_DASHBOARD_ENABLE_PROFILING): the processes of a finished session are gone,
    so there is nothing to attach py-spy or memray to. The defaults are Ray 2.60's, for the UI's dialogs."""
    defaults = {"native": False, "subprocesses": False, "idle": False, "leaks": False,
                "trace_python_allocators": False, "cpu_duration": 5, "memory_duration": 10, "max_duration": 60,
                "cpu_format": "flamegraph", "memory_format": "flamegraph", "pyspy_native_supported": False}  # fmt: skip
    return rest_response(OK, "", profiling_enabled=False, profiling_defaults=defaults)


@router.get("/api/authentication_mode", include_in_schema=False)
def authentication_mode() -> Response:
    # The history server has its own access control (none of Ray's tokens): Ray's UI must not ask for one.
    return RayJSON({"authentication_mode": "disabled"})
