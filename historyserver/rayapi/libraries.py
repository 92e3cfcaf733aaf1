"""What Ray 2.60's dashboard answers about its libraries' work, for a finished session: Serve's applications
(`serve_head`) and Ray Data's datasets (`data_head`), from what the collector archived of them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..views.common import session_of_path
from . import rows
from .envelope import RayJSON

router = APIRouter()
# ServeInstanceDetails.get_empty_schema_dict(): Ray's answer when no Serve controller runs.
NO_SERVE: dict[str, Any] = {"controller_info": {}, "proxies": {}, "applications": {}, "target_capacity": None}
# data_head.DATASET_METRICS: read from Prometheus while the cluster lives; Ray answers 0 for each when
# Prometheus does not answer, and a finished session has no Prometheus.
DATASET_METRICS = {
    "ray_data_output_rows": ("max",), "ray_data_spilled_bytes": ("max",), "ray_data_current_bytes": ("value", "max"),
    "ray_data_cpu_usage_cores": ("value", "max"), "ray_data_gpu_usage_cores": ("value", "max"),
    "ray_data_memory_usage_bytes": ("value", "max"),
}  # fmt: skip


def _events(request: Request) -> Any:
    return session_of_path(request).cursor("events")


@router.get("/api/serve/applications/", include_in_schema=False)
def serve_applications(request: Request) -> Response:
    """The last Serve status the collector polled (DASHBOARD_SERVE_APPLICATIONS), else Ray's answer for a
    cluster without Serve (the UI then shows no application, with no error)."""
    snapshot = rows.latest_snapshot(_events(request), "DASHBOARD_SERVE_APPLICATIONS")
    return RayJSON(snapshot if isinstance(snapshot, dict) and "applications" in snapshot else NO_SERVE)


def _metrics() -> dict[str, dict[str, int]]:
    return {metric: dict.fromkeys(kinds, 0) for metric, kinds in DATASET_METRICS.items()}


def dataset(data: dict[str, Any]) -> dict[str, Any]:
    """One dataset as `get_datasets` flattens it, from its newest EXPORT_DATASET_METADATA record. Block and
    row counts live in Ray's stats actor and are not in the export record: null."""
    operators = (data.get("topology") or {}).get("operators") or []
    end = data.get("execution_end_time") or None  # Ray writes 0.0 until the dataset ends
    return {
        "dataset": data["dataset_id"], "job_id": data.get("job_id"), "state": data.get("state"),
        "progress": None, "total": None, "total_rows": None, "start_time": data.get("start_time"), "end_time": end,
        **_metrics(),
        "operators": [{"operator": op.get("id"), "name": op.get("name"), "progress": None, "total": None,
                       "total_rows": None, "queued_blocks": None, "state": op.get("state"), **_metrics()}
                      for op in operators if isinstance(op, dict)],
    }  # fmt: skip


@router.get("/api/data/datasets/{job_id}", include_in_schema=False)
def datasets(request: Request, job_id: str) -> Response:
    """A job's datasets, newest first as Ray sorts them; an empty list when none was archived."""
    found = [dataset(data) for data in rows.dataset_metadata(_events(request), job_id)]
    return RayJSON({"datasets": sorted(found, key=lambda item: item["start_time"] or 0, reverse=True)})
