"""How an event Ray sent becomes a row of the events table, and back.

Three sources land in the one table:
- the Ray event stream (POSTed by the dashboard agent; camelCase, or snake_case when Ray is told to
  preserve proto field names, normalised here to camelCase),
- export API files (`logs/export_events/event_EXPORT_*.log`; event_type is their source_type),
- legacy event logs (`logs/events/event_*.log`; event_type LEGACY_EVENT).

For a Ray event the typed columns take the top-level fields and the entity ids of its body; the
payload keeps the rest. Ids are base64 on the wire and hex in the columns; `rebuild_event` turns
them back, so a row plus its payload is the event Ray sent.
"""

from __future__ import annotations

import calendar
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from .ids import BadId, b64_to_hex, hex_to_b64
from .layout import InvalidName, check_name
from .parquet import RowMismatch, check_row
from .schema import EVENTS

LEGACY_EVENT = "LEGACY_EVENT"
EXPORT_PREFIX = "EXPORT_"


class MalformedEvent(ValueError):
    """An event that cannot become a row; it goes to quarantine with this message."""


@dataclass(frozen=True)
class BodySpec:
    """Where an event type keeps its entity ids: body key, and body field -> column for each id."""

    key: str
    ids: Mapping[str, str]
    attempt: str | None = None
    has_state: bool = False


_TASK_IDS = {"taskId": "task_id", "jobId": "job_id"}

BODIES: dict[str, BodySpec] = {
    "TASK_DEFINITION_EVENT": BodySpec("taskDefinitionEvent", _TASK_IDS, "taskAttempt"),
    "ACTOR_TASK_DEFINITION_EVENT": BodySpec(
        "actorTaskDefinitionEvent", {**_TASK_IDS, "actorId": "actor_id"}, "taskAttempt"
    ),
    "TASK_LIFECYCLE_EVENT": BodySpec(
        "taskLifecycleEvent",
        {**_TASK_IDS, "nodeId": "node_id", "workerId": "worker_id"},
        "taskAttempt",
        has_state=True,
    ),
    "TASK_PROFILE_EVENT": BodySpec("taskProfileEvents", _TASK_IDS, "attemptNumber"),
    "DRIVER_JOB_DEFINITION_EVENT": BodySpec("driverJobDefinitionEvent", {"jobId": "job_id", "driverNodeId": "node_id"}),
    "DRIVER_JOB_LIFECYCLE_EVENT": BodySpec("driverJobLifecycleEvent", {"jobId": "job_id"}, has_state=True),
    "NODE_DEFINITION_EVENT": BodySpec("nodeDefinitionEvent", {"nodeId": "node_id"}),
    "NODE_LIFECYCLE_EVENT": BodySpec("nodeLifecycleEvent", {"nodeId": "node_id"}, has_state=True),
    "ACTOR_DEFINITION_EVENT": BodySpec("actorDefinitionEvent", {"actorId": "actor_id", "jobId": "job_id"}),
    "ACTOR_LIFECYCLE_EVENT": BodySpec("actorLifecycleEvent", {"actorId": "actor_id"}, has_state=True),
    "WORKER_DEFINITION_EVENT": BodySpec(
        "workerDefinitionEvent", {"workerId": "worker_id", "nodeId": "node_id", "jobId": "job_id"}
    ),
    "WORKER_LIFECYCLE_EVENT": BodySpec(
        "workerLifecycleEvent", {"workerId": "worker_id", "jobId": "job_id"}, has_state=True
    ),
    "PLACEMENT_GROUP_DEFINITION_EVENT": BodySpec(
        "placementGroupDefinitionEvent", {"placementGroupId": "placement_group_id"}
    ),
    "PLACEMENT_GROUP_LIFECYCLE_EVENT": BodySpec(
        "placementGroupLifecycleEvent", {"placementGroupId": "placement_group_id"}, has_state=True
    ),
    # Submission ids are names chosen by users, not bytes: they are moved as they are.
    "SUBMISSION_JOB_DEFINITION_EVENT": BodySpec("submissionJobDefinitionEvent", {}),
    "SUBMISSION_JOB_LIFECYCLE_EVENT": BodySpec("submissionJobLifecycleEvent", {}, has_state=True),
}

# Top-level fields held by typed columns (camelCase name -> column).
_TOP = {
    "eventId": "event_id",
    "eventType": "event_type",
    "sourceType": "source_type",
    "timestamp": "timestamp",
    "sessionName": "session_name",
    "nodeId": "source_node_id",
}

# Proto map fields: their keys are user data (resource names, labels, metadata) and keep their case.
_MAP_FIELDS = frozenset(
    {
        "custom_fields", "custom_resources", "fields", "framework_versions", "label_selector", "labels",
        "metadata", "per_dataset_execution_options", "ref_ids", "required_resources", "resources",
        "resources_total", "schema_fields", "state_ts_ns", "unit_resources", "values",
    }
)  # fmt: skip


def body_key_for(event_type: str) -> str:
    """The body field of an event type, also for types this version does not know."""
    spec = BODIES.get(event_type)
    if spec is not None:
        return spec.key
    head, *rest = event_type.lower().split("_")
    return head + "".join(word.capitalize() for word in rest)


# --- timestamps -------------------------------------------------------------------------------

_SECONDS_CACHE: dict[str, int] = {}
_MIN_NS, _MAX_NS = -(1 << 63), (1 << 63) - 1


def parse_timestamp_ns(value: str) -> int:
    """RFC 3339 as protobuf writes it ('2026-11-28T19:04:08.341433151Z') to ns since the epoch, UTC."""
    if not isinstance(value, str) or len(value) < 20 or value[-1] != "Z" or value[10] != "T":
        raise MalformedEvent(f"timestamp is not RFC 3339 UTC: {value!r}")
    whole = value[:19]
    seconds = _SECONDS_CACHE.get(whole)
    if seconds is None:
        try:
            seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
        except ValueError as exc:
            raise MalformedEvent(f"timestamp is not RFC 3339 UTC: {value!r}") from exc
        if len(_SECONDS_CACHE) > 100_000:
            _SECONDS_CACHE.clear()
        _SECONDS_CACHE[whole] = seconds
    fraction = value[19:-1]
    # isdigit() alone admits other scripts' digits, which int() would read as if they were ASCII.
    if fraction and (fraction[0] != "." or not fraction[1:].isascii() or not fraction[1:].isdigit()
                     or len(fraction) > 10):  # fmt: skip
        raise MalformedEvent(f"timestamp is not RFC 3339 UTC: {value!r}")
    ns = seconds * 1_000_000_000 + (int(fraction[1:].ljust(9, "0")) if fraction else 0)
    if not _MIN_NS <= ns <= _MAX_NS:
        raise MalformedEvent(f"timestamp {value!r} is outside the years 1678-2261 that nanoseconds since 1970 can hold")
    return ns


def format_timestamp(ns: int) -> str:
    """The inverse of parse_timestamp_ns, with protobuf's choice of 0, 3, 6 or 9 fraction digits."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if nanos == 0:
        return whole + "Z"
    if nanos % 1_000_000 == 0:
        return f"{whole}.{nanos // 1_000_000:03d}Z"
    if nanos % 1_000 == 0:
        return f"{whole}.{nanos // 1_000:06d}Z"
    return f"{whole}.{nanos:09d}Z"


def _is_protobuf_spelling(value: str) -> bool:
    """True when format_timestamp gives `value` back: 0, 3, 6 or 9 digits, none ending in '000'."""
    digits = value[20:-1]
    return not digits or (len(digits) in (3, 6, 9) and not digits.endswith("000"))


# --- Ray event stream -------------------------------------------------------------------------


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def camelize(value: Any, keep_keys: bool = False) -> Any:
    """snake_case proto field names to camelCase (protobuf's JSON names); map keys stay as they are."""
    if isinstance(value, dict):
        return {
            (key if keep_keys else _camel(key)): camelize(item, keep_keys=key in _MAP_FIELDS)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [camelize(item) for item in value]
    return value


def _hex_or_keep(body: dict[str, Any], field: str, row: dict[str, Any], column: str) -> None:
    """Move an id from the body to its column as hex; an id that is not base64 stays in the payload."""
    value = body.get(field)
    if not isinstance(value, str):
        return
    try:
        row[column] = b64_to_hex(value)
    except BadId:
        return
    del body[field]


def _empty_row() -> dict[str, Any]:
    return dict.fromkeys(
        ("source_node_id", "node_id", "job_id", "task_id", "task_attempt", "actor_id", "worker_id",
         "placement_group_id", "submission_id", "state", "source_type")
    )  # fmt: skip


def ray_event_to_row(event: Any, default_session: str | None = None) -> dict[str, Any]:
    """One event of the Ray event stream (decoded JSON) as a row of the events table."""
    if not isinstance(event, dict):
        raise MalformedEvent(f"an event must be a JSON object, got {type(event).__name__}")
    event = camelize(event) if "eventId" not in event and "event_id" in event else dict(event)
    event_id = event.pop("eventId", None)
    event_type = event.pop("eventType", None)
    if not isinstance(event_id, str) or not event_id:
        raise MalformedEvent("event has no eventId")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedEvent(f"event {event_id} has no eventType")
    try:
        hex_event_id = b64_to_hex(event_id)
    except BadId as exc:
        raise MalformedEvent(f"eventId is not base64: {event_id!r}") from exc
    original_timestamp = event.pop("timestamp", None)
    timestamp = parse_timestamp_ns(original_timestamp)
    if not _is_protobuf_spelling(original_timestamp):
        # Not protobuf's own spelling (say, nine digits ending in zeros): keep it, to rebuild it exactly.
        event["timestamp"] = original_timestamp

    row = _empty_row()
    row["event_id"] = hex_event_id
    row["event_type"] = event_type
    row["timestamp"] = timestamp
    source_type = event.pop("sourceType", None)
    if source_type is not None:
        row["source_type"] = str(source_type)
    row["session_name"] = _session_name(event.pop("sessionName", None) or default_session, event_id)
    _hex_or_keep(event, "nodeId", row, "source_node_id")

    spec = BODIES.get(event_type)
    body = event.get(spec.key) if spec else None
    if spec is not None and isinstance(body, dict):
        body = event[spec.key] = dict(body)
        for field, column in spec.ids.items():
            _hex_or_keep(body, field, row, column)
        if spec.attempt is not None and type(body.get(spec.attempt)) is int:
            row["task_attempt"] = body.pop(spec.attempt)
        if "submissionId" in body and isinstance(body["submissionId"], str):
            row["submission_id"] = body.pop("submissionId")
        if spec.has_state:
            transitions = body.get("stateTransitions")
            if isinstance(transitions, list) and transitions and isinstance(transitions[-1], dict):
                state = transitions[-1].get("state")
                row["state"] = state if isinstance(state, str) else None
        if event_type == "DRIVER_JOB_DEFINITION_EVENT":
            # A copy, not a move: jobs are merged with submission status by this id.
            row["submission_id"] = _driver_submission_id(body, event_id)
    return _checked(row, event)


def _session_name(value: Any, event_id: str) -> str:
    """The session an event names: it becomes a key segment of the archive, so it is checked here."""
    if not value:
        raise MalformedEvent(f"event {event_id} has no sessionName")
    try:
        return check_name("session", value)
    except InvalidName as exc:
        raise MalformedEvent(str(exc)) from exc


def _driver_submission_id(body: dict[str, Any], event_id: str) -> str | None:
    config = body.get("config")
    metadata = config.get("metadata") if isinstance(config, dict) else None
    if not isinstance(config, dict | None) or not isinstance(metadata, dict | None):
        raise MalformedEvent(f"event {event_id}: driverJobDefinitionEvent.config.metadata must be an object")
    submission = (metadata or {}).get("job_submission_id")
    return submission if isinstance(submission, str) and submission else None


def _checked(row: dict[str, Any], payload: Any) -> dict[str, Any]:
    """The row with its payload, once the events table is sure to hold it; else MalformedEvent."""
    try:
        row["payload"] = msgspec.json.encode(payload).decode()
        check_row(row, EVENTS)
    except (RowMismatch, UnicodeEncodeError, RecursionError, msgspec.EncodeError) as exc:
        raise MalformedEvent(f"event {row.get('event_id')} cannot be stored: {exc}") from exc
    return row


def rebuild_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """The event as Ray sent it (camelCase), from a row of the events table."""
    payload: dict[str, Any] = msgspec.json.decode(row["payload"])
    event_type = row["event_type"]
    if event_type == LEGACY_EVENT or event_type.startswith(EXPORT_PREFIX):
        return {"event_id": row["event_id"], "source_type": row["source_type"], **payload}
    event: dict[str, Any] = {"eventId": hex_to_b64(row["event_id"]), "eventType": event_type}
    if row.get("source_type") is not None:
        event["sourceType"] = row["source_type"]
    ts = row["timestamp"]
    event["timestamp"] = format_timestamp(ts if isinstance(ts, int) else int(ts.value))
    event["sessionName"] = row["session_name"]
    if row.get("source_node_id") is not None:
        event["nodeId"] = hex_to_b64(row["source_node_id"])
    event.update(payload)
    spec = BODIES.get(event_type)
    if spec is not None and isinstance(event.get(spec.key), dict):
        body = event[spec.key]
        for field, column in spec.ids.items():
            if row.get(column) is not None:
                body[field] = hex_to_b64(row[column])
        if spec.attempt is not None and row.get("task_attempt") is not None:
            body[spec.attempt] = row["task_attempt"]
        if event_type.startswith("SUBMISSION_JOB_") and row.get("submission_id") is not None:
            body["submissionId"] = row["submission_id"]
    return event


# --- files: export API and legacy event logs --------------------------------------------------


def _file_event_row(line: Any, session: str, source_node_id: str | None) -> tuple[dict[str, Any], dict]:
    if not isinstance(line, dict):
        raise MalformedEvent(f"an event line must be a JSON object, got {type(line).__name__}")
    event_id = line.get("event_id")
    source_type = line.get("source_type")
    if not isinstance(event_id, str) or not event_id:
        raise MalformedEvent("event line has no event_id")
    if not isinstance(source_type, str) or not source_type:
        raise MalformedEvent(f"event line {event_id} has no source_type")
    try:
        timestamp = int(float(line.get("timestamp"))) * 1_000_000_000
    except (TypeError, ValueError, OverflowError) as exc:
        raise MalformedEvent(f"event line {event_id} has no timestamp in seconds") from exc
    row = _empty_row()
    row.update(
        event_id=event_id, source_type=source_type, timestamp=timestamp, session_name=session,
        source_node_id=source_node_id,
    )  # fmt: skip
    # The original timestamp (seconds, as a string or a number) stays in the payload.
    payload = {key: value for key, value in line.items() if key not in ("event_id", "source_type")}
    return row, payload


def export_event_to_row(line: Any, session: str, source_node_id: str | None = None) -> dict[str, Any]:
    """A line of `logs/export_events/event_EXPORT_*.log` as a row; its event_type is its source_type."""
    row, payload = _file_event_row(line, session, source_node_id)
    row["event_type"] = row["source_type"]
    data = payload.get("event_data")
    if isinstance(data, dict):
        submission = data.get("submission_job_id")
        row["submission_id"] = submission if isinstance(submission, str) else None
        state = data.get("status", data.get("state"))
        row["state"] = state if isinstance(state, str) else None
        for field in ("job_id", "task_id", "actor_id", "node_id", "worker_id"):
            if isinstance(data.get(field), str) and data[field]:
                row[field] = data[field].lower()
    return _checked(row, payload)


def legacy_event_to_row(line: Any, session: str, source_node_id: str | None = None) -> dict[str, Any]:
    """A line of `logs/events/event_*.log` as a row; its label (RAY_WORKER_FAILURE...) is its state."""
    row, payload = _file_event_row(line, session, source_node_id)
    row["event_type"] = LEGACY_EVENT
    fields = payload.get("custom_fields")
    if isinstance(fields, dict):
        for field in ("job_id", "node_id", "worker_id", "submission_id", "task_id", "actor_id"):
            if isinstance(fields.get(field), str) and fields[field]:
                row[field] = fields[field].lower() if field != "submission_id" else fields[field]
    label = payload.get("label")
    row["state"] = label if isinstance(label, str) and label else None
    return _checked(row, payload)


# --- snapshots polled from the head's dashboard ------------------------------------------------
# Placement groups, the job list, cluster status, Serve applications and cluster metadata have no
# event stream: the head's collector polls them, and each answer lands here as timestamped rows.
# Ids are content hashes, so a placement group that did not change between polls is one row.

DASHBOARD_SOURCE = "DASHBOARD"
DASHBOARD_EVENT_TYPES = {
    "placement_groups": "DASHBOARD_PLACEMENT_GROUP",  # a row per placement group
    "jobs": "DASHBOARD_JOB",  # a row per job of /api/jobs/
    "cluster_status": "DASHBOARD_CLUSTER_STATUS",
    "serve_applications": "DASHBOARD_SERVE_APPLICATIONS",
    "cluster_metadata": "DASHBOARD_CLUSTER_METADATA",
}


def dashboard_answer_to_rows(
    endpoint: str, answer: Any, session: str, source_node_id: str | None, timestamp_ns: int
) -> list[dict[str, Any]]:
    """A dashboard answer as rows of the events table (one per entity for lists)."""
    event_type = DASHBOARD_EVENT_TYPES.get(endpoint)
    if event_type is None:
        raise MalformedEvent(f"unknown dashboard endpoint {endpoint!r}")
    data = _unwrap(answer)
    if endpoint == "placement_groups":
        # The state API's list answer: {"result": {"total": n, "result": [...]}}.
        listing = data.get("result") if isinstance(data, dict) else None
        groups = listing.get("result", []) if isinstance(listing, dict) else []
        return [
            _snapshot_row(
                event_type,
                group,
                session,
                source_node_id,
                timestamp_ns,
                placement_group_id=_text(group, "placement_group_id"),
                job_id=_text(group, "creator_job_id"),
                state=_text(group, "state"),
            )
            for group in groups
            if isinstance(group, dict)
        ]
    if endpoint == "jobs":
        jobs = data if isinstance(data, list) else []
        return [
            _snapshot_row(
                event_type,
                job,
                session,
                source_node_id,
                timestamp_ns,
                job_id=_text(job, "job_id"),
                submission_id=_text(job, "submission_id"),
                state=_text(job, "status"),
            )
            for job in jobs
            if isinstance(job, dict)
        ]
    return [_snapshot_row(event_type, data, session, source_node_id, timestamp_ns)]


def _unwrap(answer: Any) -> Any:
    """The dashboard wraps most answers as {"result": true, "msg": ..., "data": {...}}."""
    if isinstance(answer, dict) and "data" in answer and "result" in answer:
        answer = answer["data"]
    return answer


def _text(entity: dict[str, Any], field: str) -> str | None:
    value = entity.get(field)
    return value if isinstance(value, str) and value else None


def _snapshot_row(
    event_type: str, data: Any, session: str, source_node_id: str | None, timestamp_ns: int, **columns: str | None
) -> dict[str, Any]:
    payload = msgspec.json.encode(data, order="sorted").decode()
    identity = "\0".join([session, event_type, *(value or "" for value in columns.values()), payload])
    row = _empty_row()
    row.update(
        event_id=hashlib.blake2b(identity.encode(), digest_size=16).hexdigest(), event_type=event_type,
        source_type=DASHBOARD_SOURCE, timestamp=timestamp_ns, session_name=session,
        source_node_id=source_node_id, payload=payload, **columns,
    )  # fmt: skip
    return row
