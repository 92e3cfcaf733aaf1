"""Synthetic archives shaped like the collector leaves them, for the history server's benchmark.

    python -m bench.archive_synth --out /tmp/archive --tasks 1000000 --sessions 10000

`write_session` writes one session's raw archive: event parts under every node, the manifest, a node
marker per node and closed.json (optionally log and metric parts). `write_catalog` writes the
documents only (manifest, node markers, closed.json) of many sessions, as a catalog to list and filter.

Realism. Every event starts as a real Ray 2.60 event of the capture in tests/fixtures/ray-2.60, with
ids, timestamps and names replaced, and becomes a row through the collector's own mapping
(archive.events.ray_event_to_row), so code that reads real archives reads these. The session is a
small simulation: tasks arrive in bursts, wait for a free worker slot on a node (so a worker never
runs two tasks at once and queueing comes from load), retry after failures, and their owner and
worker report state in 1 s flushes, splitting a task into the partial events Ray sends (about six per
attempt; the real capture has five, its tasks being shorter). Actors, jobs, nodes, workers and
placement groups come and go around them.

Speed. A million tasks cannot afford a dict per event. Each event shape is turned once into a template:
the real event is built with sentinel values, mapped to a row, and its JSON payload cut at the
sentinels; the rows of a chunk are then rendered column-wise with Arrow (ids and timestamps are
formatted with numpy), and parts are compressed in a background thread.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import gzip
import hashlib
import heapq
import json
import math
import os
import random
import re
import secrets
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from archive import changes, documents, layout
from archive.events import (
    body_key_for,
    dashboard_answer_to_rows,
    export_event_to_row,
    format_timestamp,
    ray_event_to_row,
)
from archive.layout import PartKind, SessionRef
from archive.logs import Attribution, FileChunk, chunk_rows, identify
from archive.metrics import sample_rows
from archive.parquet import rows_to_table, table_to_parquet
from archive.schema import EVENT_COLUMNS, EVENTS, METRICS
from archive.storage import Storage, open_storage
from archive.storage.local import LocalStorage

from .table import print_table

FIXTURES = Path(
    os.environ.get("RAY_HISTORY_FIXTURES", Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "ray-2.60")
)
SECOND = 1_000_000_000
MS = 1_000_000
US = 1_000
RAY_VERSION = "2.60.0"
COLLECTOR_VERSION = "0.1.0"
TASKS_PER_HOUR = 1_000_000  # the benchmark's pace: a million tasks in about an hour
CHUNK_TASKS = 50_000
ROWS_PER_PART = 250_000
BUFFERED_PARTS = 3  # rows held back for parts, in parts: what bounds memory, whatever the node count
FLUSH_NS = SECOND  # Ray's task event buffers flush every second (RAY_task_events_report_interval_ms)
POLL_NS = 30 * SECOND  # the collector's dashboard poll interval

# --- real events, one per shape -----------------------------------------------------------------


def _states(body: Mapping[str, Any]) -> list[str]:
    return [transition.get("state", "") for transition in body.get("stateTransitions", [])]


def _profile_entries(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    return body["profileEvents"]["events"]


def _has_traceback(body: Mapping[str, Any]) -> bool:
    return any("traceback" in entry["extraData"] for entry in _profile_entries(body))


# role -> (event type, which real event of that type has the shape)
_PROTOTYPES: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "task_definition": ("TASK_DEFINITION_EVENT", lambda b: b["taskType"] == "NORMAL_TASK" and list(b)[1] == "taskFunc"),
    "creation_definition": ("TASK_DEFINITION_EVENT", lambda b: b["taskType"] == "ACTOR_CREATION_TASK"),
    "driver_definition": ("TASK_DEFINITION_EVENT", lambda b: b["taskType"] == "DRIVER_TASK"),
    "actor_task_definition": ("ACTOR_TASK_DEFINITION_EVENT", lambda b: b["requiredResources"] == {"CPU": 1.0}),
    # The owner's events: with the worker it leased once SUBMITTED_TO_WORKER is in them, else without.
    "owner_submitted": (
        "TASK_LIFECYCLE_EVENT",
        lambda b: "SUBMITTED_TO_WORKER" in _states(b) and b["nodeId"] != "" and "rayErrorInfo" not in b,
    ),
    "owner_plain": (
        "TASK_LIFECYCLE_EVENT",
        lambda b: _states(b)[:1] == ["PENDING_ARGS_AVAIL"] and b["nodeId"] == "" and list(b)[1] == "stateTransitions",
    ),
    "owner_failed": (
        "TASK_LIFECYCLE_EVENT",
        lambda b: b.get("rayErrorInfo", {}).get("errorType") == "TASK_EXECUTION_EXCEPTION",
    ),
    # The executing worker's events: RUNNING (the only one with workerPid), and taskLogInfo, apart or together.
    "worker_running": (
        "TASK_LIFECYCLE_EVENT",
        lambda b: _states(b) == ["RUNNING"] and b["workerPid"] != 0 and "taskLogInfo" not in b,
    ),
    "worker_running_log": ("TASK_LIFECYCLE_EVENT", lambda b: _states(b) == ["RUNNING"] and "taskLogInfo" in b),
    "worker_log": ("TASK_LIFECYCLE_EVENT", lambda b: _states(b) == [] and "taskLogInfo" in b),
    "actor_running": (
        "TASK_LIFECYCLE_EVENT",
        lambda b: _states(b) == ["PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY", "RUNNING"],
    ),
    "driver_running": ("TASK_LIFECYCLE_EVENT", lambda b: _states(b) == ["RUNNING"] and b["workerPid"] == 0),
    "profile_worker": (
        "TASK_PROFILE_EVENT",
        lambda b: b["profileEvents"]["componentType"] == "worker" and len(_profile_entries(b)) == 4,
    ),
    "profile_error": (
        "TASK_PROFILE_EVENT",
        lambda b: len(_profile_entries(b)) == 2 and _has_traceback(b),
    ),
    "profile_actor_error": (
        "TASK_PROFILE_EVENT",
        lambda b: len(_profile_entries(b)) == 3 and _has_traceback(b),
    ),
    "profile_driver": ("TASK_PROFILE_EVENT", lambda b: b["profileEvents"]["componentType"] == "driver"),
    "node_definition": ("NODE_DEFINITION_EVENT", lambda b: True),
    "node_lifecycle": ("NODE_LIFECYCLE_EVENT", lambda b: True),
    "worker_definition": ("WORKER_DEFINITION_EVENT", lambda b: True),
    "worker_alive": ("WORKER_LIFECYCLE_EVENT", lambda b: _states(b) == ["ALIVE"]),
    "worker_dead": ("WORKER_LIFECYCLE_EVENT", lambda b: _states(b) == ["DEAD"]),
    "actor_definition": ("ACTOR_DEFINITION_EVENT", lambda b: b["isDetached"] is False),
    "actor_pending": ("ACTOR_LIFECYCLE_EVENT", lambda b: _states(b) == ["DEPENDENCIES_UNREADY", "PENDING_CREATION"]),
    "actor_alive": ("ACTOR_LIFECYCLE_EVENT", lambda b: _states(b) == ["ALIVE"]),
    "actor_dead": ("ACTOR_LIFECYCLE_EVENT", lambda b: _states(b) == ["DEAD"]),
    "driver_job_submission": (
        "DRIVER_JOB_DEFINITION_EVENT",
        lambda b: "job_submission_id" in b["config"]["metadata"],
    ),
    "driver_job_direct": ("DRIVER_JOB_DEFINITION_EVENT", lambda b: b["config"]["metadata"] == {}),
    "driver_job_lifecycle": ("DRIVER_JOB_LIFECYCLE_EVENT", lambda b: True),
}


def capture_text(path: Path) -> str:
    """A file of the capture, kept as it is or gzipped beside (`name.gz`)."""
    if path.exists():
        return path.read_text()
    packed = path.with_name(path.name + ".gz")
    if not packed.exists():
        raise FileNotFoundError(
            f"Ray 2.60 capture missing: {path} (set RAY_HISTORY_FIXTURES to tests/fixtures/ray-2.60)"
        )
    return gzip.decompress(packed.read_bytes()).decode()


class Prototypes:
    """Real events of the Ray 2.60 capture, one per shape; every `get` is a fresh deep copy."""

    def __init__(self, fixtures: Path = FIXTURES) -> None:
        path = fixtures / "ray_events_http" / "run1_all_posts_camelCase.jsonl"
        posts = [json.loads(line)["events"] for line in capture_text(path).splitlines() if line.strip()]
        events = [event for post in posts for event in post]
        self._encoded: dict[str, bytes] = {}
        for role, (event_type, accept) in _PROTOTYPES.items():
            key = body_key_for(event_type)
            found = next((e for e in events if e["eventType"] == event_type and accept(e[key])), None)
            if found is None:
                raise LookupError(f"no {event_type} of shape {role!r} in {path}")
            self._encoded[role] = msgspec.json.encode(found)

    def get(self, role: str) -> dict[str, Any]:
        return msgspec.json.decode(self._encoded[role])


# --- ids and timestamps as text, a column at a time ---------------------------------------------

_HEX_PAIRS = np.frombuffer(b"".join(b"%02x" % i for i in range(256)), dtype=np.uint16)


def _fixed_width(chars: np.ndarray) -> pa.Array:
    """Rows of a (n, width) byte matrix as an Arrow string column, without a Python object per row."""
    count, width = chars.shape
    offsets = np.arange(0, (count + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(chars, dtype=np.uint8)
    return pa.Array.from_buffers(pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def hex_ids(raw: np.ndarray) -> pa.Array:
    """(n, k) id bytes as lowercase hex, the archive's spelling."""
    if len(raw) == 0:
        return pa.array([], pa.string())
    return _fixed_width(_HEX_PAIRS[raw].view(np.uint8))


def b64_ids(raw: np.ndarray) -> pa.Array:
    """(n, k) id bytes as base64, Ray's spelling on the wire."""
    count, size = raw.shape
    if count == 0:
        return pa.array([], pa.string())
    # Padding every id to whole 3-byte groups lets one b64encode call cover the matrix; the
    # encoded padding bytes are then overwritten with '=' as base64 itself pads.
    pad = -size % 3
    if pad:
        raw = np.concatenate([raw, np.zeros((count, pad), dtype=np.uint8)], axis=1)
    chars = np.frombuffer(base64.b64encode(np.ascontiguousarray(raw).tobytes()), dtype=np.uint8)
    chars = chars.reshape(count, -1).copy()
    if pad:
        chars[:, -pad:] = ord("=")
    return _fixed_width(chars)


def decimal19(values: np.ndarray) -> pa.Array:
    """Nanosecond epochs (19 digits until 2286) as decimal text: profile events carry int64 as strings."""
    digits = np.empty((len(values), 19), dtype=np.uint8)
    rest = values.astype(np.int64, copy=True)
    for position in range(18, -1, -1):
        digits[:, position] = rest % 10 + 48
        rest //= 10
    return _fixed_width(digits)


def int_text(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values, pa.int64()), pa.string())


class Rfc3339:
    """Nanosecond timestamps as protobuf writes them, for a session's span of seconds.

    Protobuf writes 9 fraction digits unless they end in 000; the simulation keeps every timestamp
    odd, so 9 digits is always the spelling Ray would have sent.
    """

    def __init__(self, first_ns: int, last_ns: int) -> None:
        self.first = first_ns // SECOND - 1
        last = last_ns // SECOND + 2
        text = b"".join(
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode() for second in range(self.first, last)
        )
        self._prefixes = np.frombuffer(text, dtype=np.uint8).reshape(-1, 19)

    def __call__(self, ns: np.ndarray) -> pa.Array:
        seconds, nanos = np.divmod(ns.astype(np.int64), SECOND)
        index = seconds - self.first
        if len(ns) and (index.min() < 0 or index.max() >= len(self._prefixes)):
            raise ValueError("timestamp outside the session's span")
        chars = np.empty((len(ns), 30), dtype=np.uint8)
        chars[:, :19] = self._prefixes[index]
        chars[:, 19] = ord(".")
        for position in range(28, 19, -1):
            chars[:, position] = nanos % 10 + 48
            nanos //= 10
        chars[:, 29] = ord("Z")
        return _fixed_width(chars)


def json_text(value: str) -> str:
    """A string as it sits between quotes in msgspec's JSON, so a slot filled with it matches the mapping."""
    return msgspec.json.encode(value).decode()[1:-1]


def json_raw(value: Any) -> str:
    return msgspec.json.encode(value).decode()


# --- templates: a real event with its variable parts cut out -------------------------------------

# Ids the row mapping moves into typed columns: their sentinels must be real base64 ids, found again
# (as hex) in the row. Any other slot is a string "@@name@@" (inside quotes) or "@@#name@@" (raw JSON).
SENTINEL_ID_BYTES = {"event": 28, "task": 24, "job": 4, "owner_node": 28, "exec_node": 28, "worker": 28, "actor": 16}
ATTEMPT_SENTINEL = 1_999_999_999
_SENTINEL_TS = "2001-01-01T00:00:00.000000001Z"
_PAYLOAD_SLOT = re.compile(r'"@@#(\w+)@@"|@@(\w+)@@')
_COLUMN_SLOT = re.compile(r"^@@(\w+)@@$")
_SESSION_SENTINEL = "session_sentinel-0"


def _sentinel_id(name: str) -> bytes:
    return hashlib.blake2b(name.encode(), digest_size=SENTINEL_ID_BYTES[name]).digest()


_SENTINEL_HEX = {_sentinel_id(name).hex(): name for name in SENTINEL_ID_BYTES}


class Sentinels:
    """What a template builder gets instead of values: v["task"], v["s_run"], v["#pid"]..."""

    def __getitem__(self, key: str) -> Any:
        if key == "ts":
            return _SENTINEL_TS
        if key == "attempt":
            return ATTEMPT_SENTINEL
        if key in SENTINEL_ID_BYTES:
            return base64.b64encode(_sentinel_id(key)).decode()
        if key == "session":
            return _SESSION_SENTINEL  # a session name must be a valid key segment, so it has its own
        return f"@@{key}@@"


@dataclass(frozen=True)
class Template:
    """A row of one event shape: constant columns, columns filled from slots, and the payload's pieces."""

    pieces: tuple[str, ...]  # literal payload text; a slot sits between each two
    slots: tuple[str, ...]
    columns: Mapping[str, str]  # column -> slot
    constants: Mapping[str, Any]  # column -> value shared by every row of the shape


def make_template(event: dict[str, Any]) -> Template:
    """Map an event built with Sentinels as the collector would, and find where its values went."""
    row = ray_event_to_row(event)
    columns: dict[str, str] = {}
    constants: dict[str, Any] = {}
    for name in EVENT_COLUMNS:
        value = row.get(name)
        if name == "payload":
            continue
        if name == "timestamp":
            columns[name] = "ts"
        elif name == "task_attempt" and value == ATTEMPT_SENTINEL:
            columns[name] = "attempt"
        elif isinstance(value, str) and value in _SENTINEL_HEX:
            columns[name] = _SENTINEL_HEX[value]
        elif value == _SESSION_SENTINEL:
            columns[name] = "session"
        elif isinstance(value, str) and (match := _COLUMN_SLOT.match(value)):
            columns[name] = match[1]
        else:
            constants[name] = value
    payload: str = row["payload"]
    pieces: list[str] = []
    slots: list[str] = []
    last = 0
    for match in _PAYLOAD_SLOT.finditer(payload):
        pieces.append(payload[last : match.start()])
        slots.append(match[1] or match[2])
        last = match.end()
    pieces.append(payload[last:])
    leftovers = [name for name in SENTINEL_ID_BYTES if Sentinels()[name] in payload]
    if leftovers or str(ATTEMPT_SENTINEL) in payload:
        raise ValueError(f"ids {leftovers} stayed in the payload of a {row['event_type']} template")
    return Template(tuple(pieces), tuple(slots), columns, constants)


def render_payload(template: Template, count: int, values: Mapping[str, pa.Array]) -> pa.Array:
    parts: list[pa.Array | pa.Scalar] = []
    for piece, slot in zip(template.pieces, (*template.slots, None), strict=True):
        if piece:
            parts.append(pa.scalar(piece))
        if slot is not None:
            column = values[slot]
            parts.append(column if pa.types.is_string(column.type) else pc.cast(column, pa.string()))
    if not template.slots:
        return pa.repeat(pa.scalar(template.pieces[0]), count)
    return pc.binary_join_element_wise(*parts, "")


def render_table(
    template: Template, count: int, values: Mapping[str, pa.Array], payload: pa.Array | None = None
) -> pa.Table:
    """`count` rows of the template's shape (EVENTS schema); `values` holds a column per slot."""
    arrays = []
    for column in EVENTS:
        if column.name == "payload":
            arrays.append(payload if payload is not None else render_payload(template, count, values))
        elif column.name in template.columns:
            array = values[template.columns[column.name]]
            arrays.append(array if array.type == column.type else array.cast(column.type))
        else:
            arrays.append(pa.repeat(pa.scalar(template.constants.get(column.name), column.type), count))
    return pa.Table.from_arrays(arrays, schema=EVENTS)


# --- the cast: what runs in a session -------------------------------------------------------------

RAY_DATA_MAP = "ray.data._internal.execution.operators.map_operator"
RAY_DATA_STATS = "ray.data._internal.stats"
JOB_SUPERVISOR = "ray.dashboard.modules.job.job_supervisor"


@dataclass(frozen=True)
class FunctionSpec:
    """A remote function or actor method of the workload, with how it behaves."""

    module: str  # "__main__": defined in the job's entrypoint script
    function: str
    median_s: float
    group: str = "main"  # the job that calls it: main (the RayJob's), eval (a second submission), adhoc (a notebook)
    task_name: str | None = None  # set by .options(name=...) or by Ray Data
    actor_class: str | None = None
    resources: tuple[tuple[str, float], ...] = (("CPU", 1.0),)
    sigma: float = 0.8
    gpu: bool = False
    placement_group: str | None = None
    flaky: float = 1.0  # how much more often than the base rate it raises
    retry_exceptions: bool = False
    prints: float = 1.0  # lines printed per call, on average


# 50 names; how often each is called is skewed (Zipf) and decided per seed.
FUNCTIONS: tuple[FunctionSpec, ...] = (
    FunctionSpec("__main__", "read_shard", 2.0),
    FunctionSpec("__main__", "parse_records", 0.9),
    FunctionSpec("__main__", "clean_rows", 0.5),
    FunctionSpec("__main__", "dedupe_block", 1.2),
    FunctionSpec("__main__", "join_partitions", 3.5, sigma=0.9, resources=(("CPU", 2.0), ("memory", 8589934592.0))),
    FunctionSpec("__main__", "write_shard", 2.5, retry_exceptions=True, flaky=2.0),
    FunctionSpec("__main__", "compute_stats", 0.3),
    FunctionSpec("__main__", "validate_schema", 0.1, prints=0.2),
    FunctionSpec("__main__", "compress_block", 1.1),
    FunctionSpec("__main__", "upload_object", 1.5, retry_exceptions=True, flaky=3.0),
    FunctionSpec("features.text", "tokenize", 0.4),
    FunctionSpec("features.text", "embed_batch", 1.0, gpu=True, resources=(("CPU", 1.0), ("GPU", 1.0))),
    FunctionSpec("features.numeric", "normalize", 0.12, resources=(("CPU", 0.5),), prints=0.1),
    FunctionSpec("features.numeric", "featurize", 0.7),
    FunctionSpec("features.numeric", "hash_features", 0.12, resources=(("CPU", 0.5),), prints=0.1),
    FunctionSpec("features.numeric", "bucketize", 0.08, resources=(("CPU", 0.5),), prints=0.1),
    FunctionSpec("features.sampling", "sample_negatives", 0.5),
    FunctionSpec("trainer.loop", "train_step", 3.0, gpu=True, placement_group="trainer_pg", prints=2.0),
    FunctionSpec("trainer.loop", "eval_step", 1.8, gpu=True, resources=(("CPU", 1.0), ("GPU", 1.0))),
    FunctionSpec("trainer.loop", "compute_loss", 0.25),
    FunctionSpec("trainer.collective", "allreduce_grads", 0.8, placement_group="allreduce_pg"),
    FunctionSpec("trainer.checkpoint", "save_checkpoint", 5.0, retry_exceptions=True),
    FunctionSpec("trainer.checkpoint", "load_checkpoint", 3.0),
    FunctionSpec("__main__", "fetch_url", 1.2, sigma=1.2, flaky=5.0, retry_exceptions=True),
    FunctionSpec("media.image", "resize_image", 0.2),
    FunctionSpec("media.video", "decode_frames", 1.5),
    FunctionSpec("media.audio", "transcribe_chunk", 2.5, sigma=0.6, prints=3.0),
    FunctionSpec("ranking.score", "score_candidates", 0.5),
    FunctionSpec("ranking.score", "rank_results", 0.25),
    FunctionSpec("__main__", "aggregate", 1.0),
    FunctionSpec(RAY_DATA_MAP, "_map_task", 1.2, task_name="ReadParquet->SplitBlocks(16)", prints=0.0),
    FunctionSpec(RAY_DATA_MAP, "_map_task", 0.8, task_name="MapBatches(preprocess)", prints=0.0),
    FunctionSpec(RAY_DATA_MAP, "_map_task", 1.0, task_name="MapBatches(tokenize)->Write", prints=0.0),
    FunctionSpec(RAY_DATA_MAP, "_map_task", 0.15, task_name="ReadRange->MapBatches(<lambda>)", prints=0.0),
    FunctionSpec("__main__", "get_weights", 0.05, actor_class="ParameterServer", resources=()),
    FunctionSpec("__main__", "apply_gradients", 0.12, actor_class="ParameterServer", resources=()),
    FunctionSpec("__main__", "next_batch", 0.25, actor_class="DataLoader", resources=()),
    FunctionSpec("trainer.loop", "step", 1.2, actor_class="Trainer", resources=()),
    FunctionSpec("__main__", "report", 0.01, actor_class="MetricsSink", resources=()),
    FunctionSpec(RAY_DATA_STATS, "update_execution_metrics", 0.01, actor_class="_StatsActor", resources=()),
    FunctionSpec("__main__", "load_eval_shard", 1.2, group="eval"),
    FunctionSpec("__main__", "run_inference", 1.5, group="eval", gpu=True, resources=(("CPU", 1.0), ("GPU", 1.0))),
    FunctionSpec("__main__", "compute_metrics", 0.25, group="eval"),
    FunctionSpec("__main__", "bootstrap_ci", 0.8, group="eval"),
    FunctionSpec("__main__", "write_report", 0.5, group="eval", flaky=2.0),
    FunctionSpec("__main__", "square", 0.5, group="eval"),
    FunctionSpec("__main__", "incr", 0.005, group="eval", actor_class="Counter"),
    FunctionSpec("__main__", "hello", 0.02, group="adhoc"),
    FunctionSpec("__main__", "oops", 0.02, group="adhoc", flaky=40.0),
    FunctionSpec("__main__", "profile_query", 0.8, group="adhoc"),
)

# (class, module, job group, how many, name, detached, Ray namespace or None for the job's own)
ACTOR_CLASSES: tuple[tuple[str, str, str, int, str, bool, str | None], ...] = (
    ("ParameterServer", "__main__", "main", 1, "parameter_server", False, None),
    ("DataLoader", "__main__", "main", 4, "", False, None),
    ("Trainer", "trainer.loop", "main", 2, "", False, None),
    ("MetricsSink", "__main__", "main", 1, "metrics", False, None),
    ("_StatsActor", RAY_DATA_STATS, "main", 1, "datasets_stats_actor", True, "_dataset_stats_actor"),
    ("Counter", "__main__", "eval", 2, "counter", False, None),
)

# (exception type, message): what user code raises, as Ray reports it.
EXCEPTIONS: tuple[tuple[str, str], ...] = (
    ("ValueError", "invalid record at offset {n}"),
    ("KeyError", "'user_id'"),
    ("RuntimeError", "CUDA error: an illegal memory access was encountered"),
    ("FileNotFoundError", "[Errno 2] No such file or directory: '/mnt/data/shard-{n:05d}.parquet'"),
    ("TimeoutError", "timed out after 30.0 seconds"),
    ("ConnectionResetError", "[Errno 104] Connection reset by peer"),
    ("AssertionError", "shape mismatch: (512, 768) != (512, 1024)"),
    ("ZeroDivisionError", "division by zero"),
)

# Final states of an attempt.
OK, EXCEPTION, WORKER_DIED, OOM, CANCELLED, ACTOR_DIED = range(6)
OUTCOME_NAMES = ("FINISHED", "TASK_EXECUTION_EXCEPTION", "WORKER_DIED", "OUT_OF_MEMORY", "TASK_CANCELLED", "ACTOR_DIED")
MAX_RETRIES = 3  # Ray's default max_retries


@dataclass
class NodeSpec:
    index: int
    pod: str  # the archive's node segment
    group: str  # the KubeRay worker group
    raw: bytes
    ip: str
    cpus: int  # task slots; the head's 0 follows KubeRay's advice (num-cpus: "0" on the head)
    gpus: int
    memory: float
    object_store: float
    join_ns: int
    leave_ns: int | None = None  # drained by the autoscaler

    @property
    def hex(self) -> str:
        return self.raw.hex()

    @property
    def is_head(self) -> bool:
        return self.index == 0


@dataclass
class JobSpec:
    number: int  # Ray's job number: 1 is the dashboard's internal driver, hidden from /api/jobs
    group: str  # internal, main, eval, adhoc
    submission_id: str | None
    entrypoint: str
    module: str  # the entrypoint script, as Ray names __main__'s module
    start_ns: int
    end_ns: int
    driver_pid: int
    metadata: dict[str, str]
    ray_namespace: str
    share: float = 1.0  # of the tasks submitted while it runs
    driver: bool = True  # False: a submission whose entrypoint failed before a driver connected (no job id)

    @property
    def raw(self) -> bytes:
        return self.number.to_bytes(4, "little")

    @property
    def hex(self) -> str:
        return self.raw.hex()

    @property
    def driver_task(self) -> bytes:
        return b"\xff" * 20 + self.raw

    @property
    def driver_worker(self) -> bytes:
        return self.raw + b"\xff" * 24


@dataclass
class ActorSpec:
    index: int
    raw: bytes  # 12 unique bytes and the job's 4
    class_name: str
    module: str
    name: str
    job: int  # index into Cast.jobs
    node: int
    detached: bool
    ray_namespace: str
    create_ns: int
    alive_ns: int
    death_ns: int | None  # None: alive when the cluster went away, or not settled yet
    death: str  # owner, kill, crash, exit, none
    port: int
    proc: int = -1
    supervises: int | None = None  # a JobSupervisor: the job whose submission it runs

    @property
    def hex(self) -> str:
        return self.raw.hex()


@dataclass
class PlacementGroupSpec:
    raw: bytes  # 14 unique bytes and the creator job's 4
    name: str
    strategy: str
    bundles: list[dict[str, float]]
    job: int
    nodes: list[int]
    create_ns: int
    removed_ns: int

    @property
    def hex(self) -> str:
        return self.raw.hex()


@dataclass
class Proc:
    """A worker process: a task slot's, an actor's, or a replacement for one that died."""

    raw: bytes
    pid: int
    node: int
    job: int  # index into Cast.jobs; -1 for a prestarted worker no job has claimed yet
    file_job: str  # the job part of its log file names: ffffffff when started before any job claimed it
    start_ns: int
    end_ns: int | None = None
    exit_type: str = ""
    exit_detail: str = ""

    @property
    def hex(self) -> str:
        return self.raw.hex()


SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generated-name characters


def _rand_suffix(rng: np.random.Generator, size: int = 5) -> str:
    return "".join(SUFFIX_ALPHABET[i] for i in rng.integers(0, len(SUFFIX_ALPHABET), size))


def session_name(start_ms: int, draws: random.Random) -> str:
    """Ray's session folder name: session_<date>_<time>_<microseconds>_<pid of ray start>."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.gmtime(start_ms // 1000))
    return f"session_{stamp}_{draws.randrange(1_000_000):06d}_{draws.randrange(1, 400)}"


@dataclass
class Cast:
    """Everything a session's events are about, decided before the first task arrives."""

    ref: SessionRef
    seed: int
    start_ns: int
    window_ns: tuple[int, int]  # when the RayJob's driver submits tasks
    nodes: list[NodeSpec]
    jobs: list[JobSpec]
    functions: tuple[FunctionSpec, ...]
    weights: dict[str, np.ndarray]  # job group -> probability of each function
    exceptions: list[int]  # per function: index into EXCEPTIONS
    actors: list[ActorSpec]
    placement_groups: dict[str, PlacementGroupSpec]
    owner_name: str  # the RayJob's
    tasks: int

    @property
    def session(self) -> str:
        return self.ref.session

    @property
    def head(self) -> NodeSpec:
        return self.nodes[0]

    def job_index(self, group: str) -> int:
        return next(i for i, job in enumerate(self.jobs) if job.group == group)


def _function_weights(rng: np.random.Generator, functions: Sequence[FunctionSpec]) -> dict[str, np.ndarray]:
    """Per job group, a Zipf-skewed probability per function: a few functions make most of the tasks."""
    weights: dict[str, np.ndarray] = {}
    for group in ("main", "eval", "adhoc"):
        members = [i for i, spec in enumerate(functions) if spec.group == group]
        ranks = rng.permutation(len(members)) + 1
        share = np.zeros(len(functions))
        share[members] = 1.0 / ranks**1.1
        share /= share.sum()
        # Actor calls are about a tenth of a pipeline's tasks, GPU tasks a few percent: GPUs are scarce.
        _cap(share, [i for i in members if functions[i].actor_class], 0.1 if group == "main" else 0.15)
        _cap(share, [i for i in members if functions[i].gpu], 0.01 if group == "main" else 0.04)
        weights[group] = share / share.sum()
    return weights


def _cap(share: np.ndarray, members: list[int], most: float) -> None:
    """Scale `members` down to at most `most` of the total, the others up to keep the sum at 1."""
    total = float(share[members].sum()) if members else 0.0
    if total <= most:
        return
    others = np.ones(len(share), dtype=bool)
    others[members] = False
    share[members] *= most / total
    share[others] *= (1 - most) / share[others].sum()


def _mean_seconds(functions: Sequence[FunctionSpec], weights: np.ndarray, gpu: bool) -> tuple[float, float]:
    """(share of tasks, mean seconds of work) of the pool tasks that need GPU slots or CPU slots."""
    picked = [i for i, f in enumerate(functions) if not f.actor_class and f.gpu == gpu and weights[i] > 0]
    share = float(weights[picked].sum()) if picked else 0.0
    if not picked:
        return 0.0, 0.0
    mean = sum(weights[i] * functions[i].median_s * math.exp(functions[i].sigma ** 2 / 2) for i in picked) / share
    return share, mean


def plan_session(
    ref: SessionRef,
    tasks: int,
    seed: int,
    nodes: int | None = None,
    start_ms: int | None = None,
    duration_s: float | None = None,
) -> Cast:
    """Nodes sized for the load, jobs, actors and placement groups of one session."""
    rng = np.random.default_rng([seed, 1])
    window_s = duration_s if duration_s is not None else max(120.0, tasks * 3600.0 / TASKS_PER_HOUR)
    if start_ms is None:
        start_ms = time.time_ns() // MS - int((window_s + 300) * 1000)
    start_ns = start_ms * MS
    submit_ns = start_ns + 60 * SECOND  # KubeRay submits once the head is up
    window = (submit_ns + 8 * SECOND, submit_ns + 8 * SECOND + int(window_s * SECOND))
    weights = _function_weights(rng, FUNCTIONS)
    node_list = _plan_nodes(ref, rng, tasks, window_s, weights, nodes, start_ns, window)
    has_gpu = any(node.gpus for node in node_list)
    functions = FUNCTIONS if has_gpu else tuple(_without_gpu(f) for f in FUNCTIONS)
    functions = _fit_actors(functions, weights["main"], tasks / window_s)
    owner = ref.cluster.rsplit("-", 1)[0] if "-" in ref.cluster else ref.cluster
    jobs = _plan_jobs(rng, owner, start_ns, submit_ns, window)
    actors = _plan_actors(rng, jobs, node_list, window)
    groups = _plan_placement_groups(rng, jobs, node_list, has_gpu)
    exceptions = [_exception_for(f) for f in functions]
    return Cast(
        ref, seed, start_ns, window, node_list, jobs, functions, weights, exceptions, actors, groups, owner, tasks
    )


def _without_gpu(spec: FunctionSpec) -> FunctionSpec:
    if not spec.gpu:
        return spec
    resources = tuple((name, amount) for name, amount in spec.resources if name != "GPU")
    return dataclasses.replace(spec, gpu=False, resources=resources)


def _fit_actors(functions: tuple[FunctionSpec, ...], weights: np.ndarray, rate: float) -> tuple[FunctionSpec, ...]:
    """Shorten the methods of an actor class whose calls would outgrow its actors (an actor runs one
    call at a time): queues would grow for the whole session instead of coming and going."""
    fitted = list(functions)
    for name, _, group, count, *_ in ACTOR_CLASSES:
        if group != "main":
            continue
        methods = [i for i, f in enumerate(functions) if f.actor_class == name]
        load = sum(rate * weights[i] * functions[i].median_s * math.exp(functions[i].sigma ** 2 / 2) for i in methods)
        if load > 0.6 * count:
            for i in methods:
                fitted[i] = dataclasses.replace(functions[i], median_s=functions[i].median_s * 0.6 * count / load)
    return tuple(fitted)


def _exception_for(spec: FunctionSpec) -> int:
    if spec.function == "oops":
        return 7  # ZeroDivisionError, as the fixture's direct driver raised
    if spec.gpu:
        return 2  # RuntimeError: CUDA error
    digest = hashlib.blake2b(f"{spec.function}{spec.task_name}".encode(), digest_size=2).digest()
    choices = [i for i, (name, _) in enumerate(EXCEPTIONS) if name not in ("RuntimeError", "ZeroDivisionError")]
    return choices[int.from_bytes(digest, "little") % len(choices)]


def _plan_nodes(
    ref: SessionRef,
    rng: np.random.Generator,
    tasks: int,
    window_s: float,
    weights: dict[str, np.ndarray],
    nodes: int | None,
    start_ns: int,
    window: tuple[int, int],
) -> list[NodeSpec]:
    """A head and worker nodes with slots for 90% of the load: queues come and go with the bursts."""
    rate = tasks / window_s
    utilisation = 0.9
    cpu_share, cpu_seconds = _mean_seconds(FUNCTIONS, weights["main"], gpu=False)
    # GPUs are sized for the busiest stretch: while the evaluation job runs, it adds GPU work.
    peak = 0.75 * weights["main"] + 0.25 * weights["eval"]
    gpu_share, gpu_seconds = _mean_seconds(FUNCTIONS, peak, gpu=True)
    cpu_slots = max(8, math.ceil(rate * cpu_share * cpu_seconds / utilisation))
    gpu_slots = max(4, math.ceil(rate * gpu_share * gpu_seconds / utilisation))
    if nodes is None:
        cpu_nodes = min(16, max(1, math.ceil(cpu_slots / 192)))  # m7i.48xlarge-sized workers
        gpu_nodes = math.ceil(gpu_slots / 8) if cpu_nodes >= 2 else 0
        nodes = 1 + cpu_nodes + gpu_nodes + (1 if cpu_nodes >= 3 else 0)
    if nodes < 1:
        raise ValueError("a session needs at least one node")
    workers = nodes - 1
    gpu_nodes = min(max(1, math.ceil(gpu_slots / 8)), workers - 1) if workers >= 2 else 0
    autoscaled = 1 if workers - gpu_nodes >= 4 else 0
    permanent = max(1, workers - gpu_nodes - autoscaled)
    cpus = max(8, math.ceil(cpu_slots / permanent / 8) * 8)
    gpus = max(4, math.ceil(gpu_slots / max(gpu_nodes, 1) / 4) * 4) if gpu_nodes else 0
    specs: list[NodeSpec] = []
    for index in range(nodes):
        if index == 0:
            group, slots, accelerators = "headgroup", (cpus if nodes == 1 else 0), 0
            pod = f"{ref.cluster}-head-{_rand_suffix(rng)}"
        elif index > nodes - 1 - gpu_nodes:
            group, slots, accelerators = "gpu-group", 8, gpus
            pod = f"{ref.cluster}-{group}-worker-{_rand_suffix(rng)}"
        else:
            group, slots, accelerators = "cpu-group", cpus, 0
            pod = f"{ref.cluster}-{group}-worker-{_rand_suffix(rng)}"
        join = start_ns + (8 if index == 0 else int(rng.integers(25, 55))) * SECOND
        leave = None
        if autoscaled and index == nodes - 1 - gpu_nodes:  # the last CPU node
            span = window[1] - window[0]
            join, leave = window[0] + span // 10, window[0] + span * 85 // 100
        memory = float(max(slots, 4) * 4 * 2**30 + accelerators * 16 * 2**30)
        specs.append(
            NodeSpec(
                index,
                pod,
                group,
                rng.bytes(28),
                f"10.244.{int(rng.integers(0, 64))}.{int(rng.integers(2, 250))}",
                slots,
                accelerators,
                memory,
                round(memory * 0.3),
                join + int(rng.integers(0, SECOND)) | 1,
                leave,
            )
        )
    return specs


def _plan_jobs(
    rng: np.random.Generator, owner: str, start_ns: int, submit_ns: int, window: tuple[int, int]
) -> list[JobSpec]:
    """The dashboard's internal driver, the RayJob's submission, an evaluation submission, a failed
    submission (its entrypoint could not start) and a notebook's direct driver, as in the fixture."""
    span = window[1] - window[0]
    namespace = _uuid(rng)
    return [
        JobSpec(1, "internal", None, "", "", start_ns + 12 * SECOND, window[1] + span, 310, {}, namespace),
        JobSpec(
            2,
            "main",
            f"{owner}-{_rand_suffix(rng)}",
            "python pipeline.py --config configs/prod.yaml",
            "pipeline",
            submit_ns + 4 * SECOND,
            window[1],
            420,
            {"owner": owner, "team": "ml-platform"},
            _uuid(rng),
        ),
        JobSpec(
            3,
            "eval",
            f"raysubmit_{_rand_suffix(rng, 16)}",
            "python evaluate.py --split holdout",
            "evaluate",
            window[0] + span * 35 // 100,
            window[0] + span * 55 // 100,
            2011,
            {"owner": "eval-bot"},
            _uuid(rng),
            0.25,
        ),
        JobSpec(
            0,
            "failed",
            f"raysubmit_{_rand_suffix(rng, 16)}",
            "python backfill.py --date yesterday",
            "backfill",
            window[0] + span * 20 // 100,
            window[0] + span * 20 // 100 + 4 * SECOND,
            0,
            {"owner": "cron"},
            _uuid(rng),
            0.0,
            driver=False,
        ),
        JobSpec(
            4,
            "adhoc",
            None,
            "python -i",
            "notebook",
            window[0] + span * 70 // 100,
            window[0] + span * 74 // 100,
            3377,
            {},
            _uuid(rng),
            0.1,
        ),
    ]


def _uuid(rng: np.random.Generator) -> str:
    text = rng.bytes(16).hex()
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-a{text[17:20]}-{text[20:]}"


def _plan_actors(
    rng: np.random.Generator, jobs: list[JobSpec], nodes: list[NodeSpec], window: tuple[int, int]
) -> list[ActorSpec]:
    """The workload's actors, one DataLoader crashing mid-run, and a JobSupervisor per submission."""
    workers = [node.index for node in nodes if not node.is_head and node.leave_ns is None] or [0]
    span = window[1] - window[0]
    actors: list[ActorSpec] = []

    def add(
        class_name: str,
        module: str,
        job: int,
        name: str,
        detached: bool,
        namespace: str,
        node: int,
        create: int,
        death: int | None,
        how: str,
        supervises: int | None = None,
    ) -> None:
        raw = rng.bytes(12) + jobs[job].raw
        alive = create + int(rng.integers(300, 2500)) * MS
        port = int(rng.integers(10002, 11000))
        actors.append(
            ActorSpec(
                len(actors),
                raw,
                class_name,
                module,
                name,
                job,
                node,
                detached,
                namespace,
                create | 1,
                alive | 1,
                death,
                how,
                port,
                supervises=supervises,
            )
        )

    for job_index, job in enumerate(jobs):
        if job.submission_id is not None:
            name = f"_ray_internal_job_actor_{job.submission_id}"
            add(
                "JobSupervisor",
                JOB_SUPERVISOR,
                0,
                name,
                True,
                "SUPERVISOR_ACTOR_RAY_NAMESPACE",
                0,
                job.start_ns - 3 * SECOND,
                None,
                "exit",
                supervises=job_index,
            )
        for class_name, module, group, count, name, detached, namespace in ACTOR_CLASSES:
            if group != job.group:
                continue
            for copy in range(count):
                node = workers[int(rng.integers(0, len(workers)))]
                # Killed with ray.kill when the evaluation ends; the pipeline's die with their driver
                # (settled once the driver's last task has finished).
                death: int | None = job.end_ns + SECOND if group == "eval" else None
                how = "kill" if group == "eval" else "owner"
                if detached:
                    death, how = None, "none"
                elif class_name == "DataLoader" and copy == count - 1:
                    death, how = window[0] + span * 6 // 10, "crash"
                label = f"{name}-{copy}" if name and count > 1 else name
                add(
                    class_name,
                    module,
                    job_index,
                    label,
                    detached,
                    namespace or job.ray_namespace,
                    node,
                    job.start_ns + SECOND + copy * 200 * MS,
                    death,
                    how,
                )
    return actors


def _plan_placement_groups(
    rng: np.random.Generator, jobs: list[JobSpec], nodes: list[NodeSpec], has_gpu: bool
) -> dict[str, PlacementGroupSpec]:
    main = next(i for i, job in enumerate(jobs) if job.group == "main")
    evaluation = next(i for i, job in enumerate(jobs) if job.group == "eval")
    workers = [node.index for node in nodes if not node.is_head] or [0]
    gpu_node = next((node.index for node in nodes if node.gpus), workers[0])
    trainer_bundle = {"CPU": 1.0, "GPU": 1.0} if has_gpu else {"CPU": 2.0}
    plans = (
        ("trainer_pg", "STRICT_PACK", [trainer_bundle] * 4, main, [gpu_node] * 4),
        ("allreduce_pg", "SPREAD", [{"CPU": 2.0}] * 2, main, [workers[i % len(workers)] for i in range(2)]),
        ("eval_pg", "PACK", [{"CPU": 1.0}], evaluation, [workers[0]]),
    )
    groups = {}
    for name, strategy, bundles, job, placed in plans:
        owner = jobs[job]
        groups[name] = PlacementGroupSpec(
            rng.bytes(14) + owner.raw,
            name,
            strategy,
            bundles,
            job,
            placed,
            owner.start_ns + 2 * SECOND + int(rng.integers(0, SECOND)),
            owner.end_ns + SECOND,
        )
    return groups


# --- the simulation: tasks arrive, wait for a worker, run, fail, retry -------------------------------


@dataclass
class Attempts:
    """Task attempts of a chunk, a column per field (times in ns since the epoch, all odd)."""

    task: np.ndarray  # (n, 24) id bytes
    attempt: np.ndarray
    func: np.ndarray  # index into Cast.functions
    job: np.ndarray  # index into Cast.jobs
    actor: np.ndarray  # index into Cast.actors, -1 for a normal task
    outcome: np.ndarray  # OK, EXCEPTION, ...
    t_pa: np.ndarray  # submitted: PENDING_ARGS_AVAIL
    t_pna: np.ndarray  # PENDING_NODE_ASSIGNMENT
    ready: np.ndarray  # the raylet would grant a lease from here on
    rel: dict[str, np.ndarray]  # times relative to RUNNING, drawn before scheduling
    running_reported: np.ndarray  # False: the worker died before its RUNNING event was flushed
    t_stw: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    t_run: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    t_end: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    proc: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))
    node: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))

    def __len__(self) -> int:
        return len(self.attempt)

    @staticmethod
    def concat(parts: Sequence[Attempts]) -> Attempts:
        if len(parts) == 1:
            return parts[0]
        merged: dict[str, Any] = {}
        for column in dataclasses.fields(Attempts):
            if column.name == "rel":
                merged["rel"] = {name: np.concatenate([p.rel[name] for p in parts]) for name in parts[0].rel}
            else:
                merged[column.name] = np.concatenate([getattr(p, column.name) for p in parts])
        return Attempts(**merged)

    def at(self, name: str) -> np.ndarray:
        """An absolute time: RUNNING plus the drawn offset."""
        return (self.t_run + self.rel[name]) | 1


class Workers:
    """Worker processes and the task slots they fill. A lease goes to the slot that frees soonest; a
    slot keeps a worker per job (Ray binds a worker to one job) and a crashed worker is replaced."""

    def __init__(self, cast: Cast, rng: np.random.Generator) -> None:
        self.cast = cast
        self.rng = rng
        self.procs: list[Proc] = []
        self.fresh: list[int] = []  # procs started since the last drain: their events are due
        self.ended: list[int] = []  # procs that died since the last drain
        self.next_pid = [int(rng.integers(180, 260)) for _ in cast.nodes]
        self.heaps: dict[bool, list[tuple[int, int]]] = {False: [], True: []}  # gpu? -> (free at, slot)
        self.slot_node: list[int] = []
        self.slot_retire: list[int] = []  # a drained node's slots take no task running past this
        self.slot_procs: list[dict[int, int]] = []  # job (-1: unclaimed) -> proc
        self.actor_free: list[int] = [actor.alive_ns for actor in cast.actors]
        for node in cast.nodes:
            for gpu, count in ((False, node.cpus), (True, node.gpus)):
                for _ in range(count):
                    self._add_slot(node, gpu)
        for actor in cast.actors:
            # The actor's worker starts between creation and ALIVE (at least 300 ms after creation).
            actor.proc = self.start(actor.node, actor.job, actor.create_ns + int(rng.integers(100, 250)) * MS)
        self.log_out = np.zeros(0, np.int64)  # bytes written so far to each proc's .out and .err
        self.log_err = np.zeros(0, np.int64)

    def _add_slot(self, node: NodeSpec, gpu: bool) -> None:
        slot = len(self.slot_node)
        started = node.join_ns + int(self.rng.integers(1500, 4000)) * MS
        self.slot_node.append(node.index)
        self.slot_retire.append(node.leave_ns - 5 * SECOND if node.leave_ns else 1 << 62)
        self.slot_procs.append({-1: self.start(node.index, -1, started)})
        heapq.heappush(self.heaps[gpu], (started, slot))

    def start(self, node: int, job: int, at_ns: int) -> int:
        """A new worker process; Ray names a worker started before a job claimed it with job ffffffff."""
        self.next_pid[node] += int(self.rng.integers(1, 12))
        file_job = "ffffffff" if job < 0 else self.cast.jobs[job].hex
        self.procs.append(Proc(self.rng.bytes(28), self.next_pid[node], node, job, file_job, at_ns | 1))
        self.fresh.append(len(self.procs) - 1)
        return len(self.procs) - 1

    def end(self, proc: int, at_ns: int, exit_type: str, detail: str) -> None:
        self.procs[proc].end_ns, self.procs[proc].exit_type, self.procs[proc].exit_detail = at_ns | 1, exit_type, detail
        self.ended.append(proc)

    def drain(self) -> tuple[list[int], list[int]]:
        """Procs started and ended since the last call."""
        fresh, ended = self.fresh, self.ended
        self.fresh, self.ended = [], []
        return fresh, ended

    def schedule(self, batch: Attempts, child: np.ndarray) -> None:
        """Lease a slot (or queue on the actor) for every attempt, in the order they become ready. A
        retry (`child` of a failed attempt) is submitted when its parent's failure reaches the owner."""
        count = len(batch)
        rel = batch.rel
        lease_gap, push_gap, busy, end_rel, crash_at, retry_gap, pna_gap, ready_gap = (
            rel.pop(name).tolist()
            for name in ("lease_gap", "push_gap", "busy", "end", "crash_at", "retry_gap", "pna_gap", "ready_gap")
        )
        t_pa, t_pna, ready = batch.t_pa.tolist(), batch.t_pna.tolist(), batch.ready.tolist()
        stw, run, end, proc, node = [0] * count, [0] * count, [0] * count, [0] * count, [0] * count
        actors, jobs, children = batch.actor.tolist(), batch.job.tolist(), child.tolist()
        gpu = [self.cast.functions[f].gpu for f in batch.func.tolist()]
        crashed = np.where(np.isin(batch.outcome, (WORKER_DIED, OOM)), batch.outcome, OK).tolist()
        first = np.flatnonzero(batch.attempt == 0)
        order = first[np.argsort(batch.ready[first], kind="stable")].tolist()
        retries: list[tuple[int, int]] = []  # (ready, row)
        heaps, retire, slot_procs, slot_node = self.heaps, self.slot_retire, self.slot_procs, self.slot_node
        heappop, heappush = heapq.heappop, heapq.heappush
        position = 0
        while position < len(order) or retries:
            if retries and (position == len(order) or retries[0][0] < ready[order[position]]):
                i = heappop(retries)[1]
            else:
                i = order[position]
                position += 1
            if actors[i] >= 0:
                stw[i] = ready[i] + lease_gap[i]
                run[i], end[i], proc[i], node[i] = self._queue_on_actor(
                    actors[i], stw[i], push_gap[i], busy[i], end_rel[i], batch.outcome, i
                )
            else:
                heap, took, want = heaps[gpu[i]], busy[i], ready[i]
                free, slot = heappop(heap)
                begin = free if free > want else want
                while begin + took > retire[slot]:  # the slot's node is being drained: no more work there
                    free, slot = heappop(heap)
                    begin = free if free > want else want
                worker = slot_procs[slot].get(jobs[i])
                if worker is None:
                    worker, begin = self._claim(slot, jobs[i], begin)
                stw[i] = begin + lease_gap[i]
                run[i] = stw[i] + push_gap[i]
                end[i] = run[i] + end_rel[i]
                proc[i], node[i] = worker, slot_node[slot]
                free = run[i] + took
                if crashed[i]:
                    free = self._crash(slot, jobs[i], worker, run[i] + crash_at[i], crashed[i])
                heappush(heap, (free, slot))
            retry = children[i]
            if retry >= 0:
                t_pa[retry] = end[i] + retry_gap[retry]
                t_pna[retry] = t_pa[retry] + pna_gap[retry]
                ready[retry] = t_pna[retry] + ready_gap[retry]
                heappush(retries, (ready[retry], retry))
        as_array = partial(np.array, dtype=np.int64)
        batch.t_pa, batch.t_pna, batch.ready = as_array(t_pa) | 1, as_array(t_pna) | 1, as_array(ready)
        batch.t_stw, batch.t_run, batch.t_end = as_array(stw) | 1, as_array(run) | 1, as_array(end) | 1
        batch.proc, batch.node = np.array(proc, np.int32), np.array(node, np.int32)

    def _queue_on_actor(
        self, index: int, stw: int, push_gap: int, busy: int, end_rel: int, outcome: np.ndarray, row: int
    ) -> tuple[int, int, int, int]:
        """(RUNNING, end, proc, node) of a call: an actor runs one call at a time, and a call that
        reaches a dead actor fails with ACTOR_DIED."""
        actor = self.cast.actors[index]
        run = max(stw + push_gap, self.actor_free[index])
        end = run + end_rel
        if actor.death_ns is not None and run >= actor.death_ns:
            outcome[row] = ACTOR_DIED
            end = max(stw, actor.death_ns) + int(self.rng.integers(1, 20)) * MS
        else:
            self.actor_free[index] = run + busy
        return run, end, actor.proc, actor.node

    def _claim(self, slot: int, job: int, begin: int) -> tuple[int, int]:
        """The slot's worker for `job`: a prestarted one it claims, or a new one (Ray starts a worker
        for a lease when the slot has none of that job; it takes about a second)."""
        procs = self.slot_procs[slot]
        worker = procs.pop(-1, None)
        if worker is not None:
            self.procs[worker].job = job
        else:
            worker = self.start(self.slot_node[slot], job, begin)
            begin = self.procs[worker].start_ns + int(self.rng.integers(400, 1500)) * MS
        procs[job] = worker
        return worker, begin

    def _crash(self, slot: int, job: int, worker: int, died: int, outcome: int) -> int:
        """The worker dies with its task; a replacement starts. Returns when the slot is free again."""
        self.end(worker, died, *(_OOM_DEATH if outcome == OOM else _WORKER_DEATHS[int(self.rng.integers(0, 2))]))
        replacement = self.start(self.slot_node[slot], job, died + int(self.rng.integers(300, 1500)) * MS)
        self.slot_procs[slot][job] = replacement
        return self.procs[replacement].start_ns + int(self.rng.integers(300, 1000)) * MS

    def log_offsets(
        self, batch: Attempts, rows: np.ndarray, out_bytes: np.ndarray, err_bytes: np.ndarray, marker_bytes: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """(stdout start, end, stderr start, end) of each row's output in its worker's files, which
        hold Ray's `:job_id:` line, then per task a `:task_name:` line and what the task printed."""
        grow = len(self.procs) - len(self.log_out)
        if grow > 0:
            job_marker = len(":job_id:ffffffff\n")
            self.log_out = np.concatenate([self.log_out, np.full(grow, job_marker, np.int64)])
            self.log_err = np.concatenate([self.log_err, np.full(grow, job_marker, np.int64)])
        # Per worker in order of RUNNING: each task's output ends where the bytes written so far end.
        order = np.lexsort((batch.t_run[rows], batch.proc[rows]))
        procs = batch.proc[rows][order]
        first = np.r_[True, procs[1:] != procs[:-1]]
        last = np.r_[procs[1:] != procs[:-1], True]
        group_start = np.maximum.accumulate(np.where(first, np.arange(len(procs)), 0))
        offsets: list[np.ndarray] = []
        for written, size in ((self.log_out, out_bytes), (self.log_err, err_bytes)):
            step = marker_bytes[order] + size[order]
            ends = np.cumsum(step)
            ends += written[procs] - (ends[group_start] - step[group_start])
            written[procs[last]] = ends[last]
            end = np.empty(len(rows), np.int64)
            end[order] = ends
            offsets += [end - size, end]
        return tuple(offsets)


_OOM_DEATH = (
    "NODE_OUT_OF_MEMORY",
    "Task was killed due to the node running low on memory. Memory on the node was 0.96 of its capacity, which "
    "exceeds the memory usage threshold of 0.95. Ray killed this worker because it was the most recently "
    "scheduled task.",
)
_WORKER_DEATHS = (
    (
        "SYSTEM_ERROR",
        "Worker unexpectedly exits with a connection error code 2. End of file. Some common causes "
        "include: (1) the process was killed by the OOM killer due to high memory usage, (2) ray stop --force was "
        "called, or (3) the worker crashed unexpectedly due to SIGSEGV or another unexpected error.",
    ),
    (
        "SYSTEM_ERROR",
        "Worker unexpectedly exits with a connection error code 2. End of file. The worker may have "
        "exceeded K8s pod memory limits.",
    ),
)


BASE_EXCEPTION_RATE = 0.011  # per attempt, before a function's flakiness; about 1% of tasks end FAILED
CRASH_RATE = 0.0025
OOM_RATE = 0.0008
CANCEL_RATE = 0.0003
DEPENDENT_SHARE = 0.6  # of first attempts, waiting for upstream tasks' results


def _uniform_ns(rng: np.random.Generator, low_ns: float, high_ns: float, count: int) -> np.ndarray:
    return rng.uniform(low_ns, high_ns, count).astype(np.int64)


def _lognormal_ns(
    rng: np.random.Generator, median_ns: float | np.ndarray, sigma: float | np.ndarray, count: int
) -> np.ndarray:
    return (median_ns * np.exp(sigma * rng.standard_normal(count))).astype(np.int64) + 1


class Simulation:
    """Produces the session's task attempts a chunk at a time, in submission order."""

    def __init__(self, cast: Cast) -> None:
        self.cast = cast
        self.rng = np.random.default_rng([cast.seed, 2])
        self.workers = Workers(cast, self.rng)
        self.clock = cast.window_ns[0]
        self.mean_gap = (cast.window_ns[1] - cast.window_ns[0]) / max(cast.tasks, 1)
        functions = cast.functions
        self.median = np.array([f.median_s * SECOND for f in functions])
        self.sigma = np.array([f.sigma for f in functions])
        self.flaky = np.array([f.flaky for f in functions])
        self.retries_exceptions = np.array([f.retry_exceptions for f in functions])
        self.by_class = {
            name: [a.index for a in cast.actors if a.class_name == name] for name in {a.class_name for a in cast.actors}
        }
        self.attempt_counts = np.zeros(len(OUTCOME_NAMES), np.int64)
        self.final_counts = np.zeros(len(OUTCOME_NAMES), np.int64)

    def chunk(self, count: int) -> Attempts:
        """`count` new tasks and every retry they lead to."""
        t_pa = self._arrivals(count)
        job = self._jobs(t_pa)
        func = self._functions(job)
        actor = self._actors(func, t_pa)
        task = self._task_ids(job, actor)
        levels = [self._draw(task, np.zeros(count, np.int32), func, job, actor, t_pa)]
        parents: list[np.ndarray] = []
        # Whether an attempt fails is drawn up front, so its retry can be drawn too; when it is
        # submitted is known only once the failure happens (Workers.schedule).
        while len(retried := self._retried(levels[-1])):
            last = levels[-1]
            parents.append(retried)
            levels.append(
                self._draw(
                    last.task[retried],
                    last.attempt[retried] + 1,
                    last.func[retried],
                    last.job[retried],
                    last.actor[retried],
                    np.zeros(len(retried), np.int64),
                    retry=True,
                )
            )
        batch = Attempts.concat(levels)
        child = np.full(len(batch), -1, np.int64)
        offset = 0
        for level, retried in zip(levels, parents, strict=False):
            child[offset + retried] = offset + len(level) + np.arange(len(retried))
            offset += len(level)
        self.workers.schedule(batch, child)
        self.attempt_counts += np.bincount(batch.outcome, minlength=len(OUTCOME_NAMES))
        self.final_counts += np.bincount(batch.outcome[child < 0], minlength=len(OUTCOME_NAMES))
        return batch

    def final_states(self) -> dict[str, int]:
        """How tasks ended (their last attempt): FINISHED, or FAILED with the error type."""
        return {name: int(count) for name, count in zip(OUTCOME_NAMES, self.final_counts, strict=True) if count}

    def _arrivals(self, count: int) -> np.ndarray:
        """Submission times: drivers submit in waves (a list comprehension of .remote() calls), a
        fraction of a millisecond apart, with pauses that keep the session's average rate."""
        sizes = np.maximum(1, self.rng.lognormal(math.log(150), 0.9, count // 20 + 8).astype(np.int64))
        while sizes.sum() < count:
            sizes = np.concatenate([sizes, sizes])
        waves = np.repeat(np.arange(len(sizes)), sizes)[:count]
        intra = _uniform_ns(self.rng, 150 * US, 500 * US, count)
        first = np.r_[True, waves[1:] != waves[:-1]]
        pause = np.maximum(sizes[waves] * self.mean_gap - (sizes[waves] - 1) * 325 * US, 100 * US)
        gaps = np.where(first, (pause * self.rng.exponential(1.0, count)).astype(np.int64), intra)
        times = self.clock + np.cumsum(gaps)
        self.clock = int(times[-1]) if count else self.clock
        return times | 1

    def _jobs(self, t_pa: np.ndarray) -> np.ndarray:
        job = np.full(len(t_pa), self.cast.job_index("main"), np.int32)
        for group in ("eval", "adhoc"):
            index = self.cast.job_index(group)
            spec = self.cast.jobs[index]
            inside = (t_pa >= spec.start_ns + 5 * SECOND) & (t_pa < spec.end_ns - 10 * SECOND)
            job[inside & (self.rng.random(len(t_pa)) < spec.share)] = index
        return job

    def _functions(self, job: np.ndarray) -> np.ndarray:
        func = np.empty(len(job), np.int32)
        for index in np.unique(job):
            rows = np.flatnonzero(job == index)
            weights = self.cast.weights[self.cast.jobs[index].group]
            func[rows] = self.rng.choice(len(weights), len(rows), p=weights)
        return func

    def _actors(self, func: np.ndarray, t_pa: np.ndarray) -> np.ndarray:
        """Actor calls go to an actor of the method's class that is still alive when called."""
        actor = np.full(len(func), -1, np.int32)
        for index, spec in enumerate(self.cast.functions):
            if spec.actor_class is None:
                continue
            rows = np.flatnonzero(func == index)
            if not len(rows):
                continue
            candidates = self.by_class[spec.actor_class]
            deaths = np.array([self.cast.actors[a].death_ns or 1 << 62 for a in candidates])
            alive = t_pa[rows, None] < deaths[None, :]
            pick = (self.rng.random(len(rows)) * np.maximum(alive.sum(axis=1), 1)).astype(np.int64)
            chosen = np.argmax(np.cumsum(alive, axis=1) > pick[:, None], axis=1)
            actor[rows] = np.array(candidates)[chosen]
        return actor

    def _task_ids(self, job: np.ndarray, actor: np.ndarray) -> np.ndarray:
        """TaskID: 8 unique bytes, then the ActorID (12 bytes, all 0xff for a normal task, and the job)."""
        task = np.empty((len(job), 24), np.uint8)
        task[:, :8] = np.frombuffer(self.rng.bytes(8 * len(job)), np.uint8).reshape(-1, 8)
        task[:, 8:20] = 0xFF
        actors = np.flatnonzero(actor >= 0)
        if len(actors):
            raws = np.frombuffer(b"".join(a.raw[:12] for a in self.cast.actors), np.uint8).reshape(-1, 12)
            task[actors, 8:20] = raws[actor[actors]]
        jobs = np.frombuffer(b"".join(j.raw for j in self.cast.jobs), np.uint8).reshape(-1, 4)
        task[:, 20:] = jobs[job]
        return task

    def _draw(
        self,
        task: np.ndarray,
        attempt: np.ndarray,
        func: np.ndarray,
        job: np.ndarray,
        actor: np.ndarray,
        t_pa: np.ndarray,
        retry: bool = False,
    ) -> Attempts:
        """How each attempt will end and how long each of its phases takes."""
        rng, count = self.rng, len(func)
        is_actor = actor >= 0
        exception_rate = BASE_EXCEPTION_RATE * self.flaky[func] * np.where(is_actor, 0.5, 1.0) * (0.35 if retry else 1)
        thresholds = np.cumsum(
            [
                exception_rate,
                np.where(is_actor, 0, CRASH_RATE),
                np.where(is_actor, 0, OOM_RATE),
                np.where(is_actor, 0, CANCEL_RATE),
            ],
            axis=0,
        )
        draw = rng.random(count)
        outcome = np.where(draw < thresholds[0], EXCEPTION, OK)
        for code, low, high in ((WORKER_DIED, 0, 1), (OOM, 1, 2), (CANCELLED, 2, 3)):
            outcome = np.where((draw >= thresholds[low]) & (draw < thresholds[high]), code, outcome)
        outcome = outcome.astype(np.int8)
        # A pipeline's tasks often take other tasks' results: they wait in PENDING_ARGS_AVAIL until
        # those are ready (a retry's arguments are ready already).
        waits = ~np.full(count, retry) & (rng.random(count) < DEPENDENT_SHARE)
        pna_gap = np.where(
            waits,
            np.minimum(_lognormal_ns(rng, 1.5 * SECOND, 1.0, count), 120 * SECOND),
            _uniform_ns(rng, 30 * US, 3 * MS, count),
        )
        ready_gap = _lognormal_ns(rng, 1 * MS, 0.7, count)
        t_pna = t_pa + pna_gap
        ready = t_pna + ready_gap
        run_for = _lognormal_ns(rng, self.median[func], self.sigma[func], count)
        cut = np.isin(outcome, (EXCEPTION, CANCELLED, WORKER_DIED, OOM))
        run_for = np.where(cut, (run_for * rng.uniform(0.05, 1.0, count)).astype(np.int64) + 1, run_for)
        rel = self._phases(outcome, run_for, is_actor)
        rel.update(pna_gap=pna_gap, ready_gap=ready_gap, retry_gap=_uniform_ns(rng, 20 * US, 200 * US, count))
        reported = ~(np.isin(outcome, (WORKER_DIED, OOM)) & (rng.random(count) < 0.5))
        return Attempts(
            task, attempt.astype(np.int32), func, job, actor, outcome, t_pa | 1, t_pna | 1, ready, rel, reported
        )

    def _phases(self, outcome: np.ndarray, run_for: np.ndarray, is_actor: np.ndarray) -> dict[str, np.ndarray]:
        """Times relative to RUNNING: the profile's phases, the log offsets' moment, the owner's end."""
        rng, count = self.rng, len(outcome)
        rel: dict[str, np.ndarray] = {}
        rel["outer_s"] = _uniform_ns(rng, 50 * US, 400 * US, count)
        rel["deser_s"] = rel["outer_s"] + _uniform_ns(rng, 10 * US, 60 * US, count)
        rel["deser_e"] = rel["deser_s"] + _lognormal_ns(rng, 400 * US, 1.2, count)
        rel["exec_s"] = rel["deser_e"] + _uniform_ns(rng, 20 * US, 150 * US, count)
        rel["exec_e"] = rel["exec_s"] + run_for
        rel["store_s"] = rel["exec_e"] + _uniform_ns(rng, 5 * US, 20 * US, count)
        rel["store_e"] = rel["store_s"] + _lognormal_ns(rng, 150 * US, 0.8, count)
        failed = outcome == EXCEPTION
        rel["outer_e"] = np.where(failed, rel["exec_e"], rel["store_e"]) + _uniform_ns(rng, 10 * US, 60 * US, count)
        rel["log"] = np.maximum(rel["exec_e"] - _uniform_ns(rng, 10 * US, 100 * US, count), rel["exec_s"] + 1)
        crashed = np.isin(outcome, (WORKER_DIED, OOM))
        rel["crash_at"] = rel["exec_e"]
        ends = {
            OK: rel["outer_e"] + _uniform_ns(rng, 300 * US, 3 * MS, count),
            EXCEPTION: rel["outer_e"] + _uniform_ns(rng, 1 * MS, 5 * MS, count),
            WORKER_DIED: rel["exec_e"] + _uniform_ns(rng, 5 * MS, 50 * MS, count),
            OOM: rel["exec_e"] + _uniform_ns(rng, 5 * MS, 50 * MS, count),
            CANCELLED: rel["exec_e"] + _uniform_ns(rng, 1 * MS, 10 * MS, count),
        }
        rel["end"] = np.select([outcome == code for code in ends], list(ends.values()))
        rel["busy"] = np.where(crashed, rel["crash_at"], rel["outer_e"]) + _uniform_ns(rng, 100 * US, 1 * MS, count)
        rel["lease_gap"] = _uniform_ns(rng, 100 * US, 2 * MS, count)
        rel["push_gap"] = np.where(
            is_actor, _uniform_ns(rng, 50 * US, 1 * MS, count), _uniform_ns(rng, 300 * US, 3 * MS, count)
        )
        # An actor call waits in the actor's queue (PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY) from
        # just before the push completes until RUNNING.
        rel["patoc"] = rel["push_gap"] - _uniform_ns(rng, 5 * US, 30 * US, count)
        return rel

    def _retried(self, batch: Attempts) -> np.ndarray:
        """Attempts Ray retries: system failures up to max_retries, exceptions where retry_exceptions."""
        system = np.isin(batch.outcome, (WORKER_DIED, OOM))
        user = (batch.outcome == EXCEPTION) & self.retries_exceptions[batch.func]
        return np.flatnonzero((system | user) & (batch.attempt < MAX_RETRIES) & (batch.actor < 0))


# --- rendering attempts: the events Ray sends about them --------------------------------------------

PENDING_ARGS_AVAIL = "PENDING_ARGS_AVAIL"
PENDING_NODE_ASSIGNMENT = "PENDING_NODE_ASSIGNMENT"
SUBMITTED_TO_WORKER = "SUBMITTED_TO_WORKER"
OWNER_SLOTS = {
    PENDING_ARGS_AVAIL: "s_pa",
    PENDING_NODE_ASSIGNMENT: "s_pna",
    SUBMITTED_TO_WORKER: "s_stw",
    "FINISHED": "s_end",
    "FAILED": "s_end",
}
NIL_PLACEMENT_GROUP = base64.b64encode(b"\xff" * 18).decode()
# Slots filled per event rather than from the attempt's columns.
EVENT_SLOTS = frozenset({"event", "ts", "session", "owner_node"})


def _envelope(event: dict[str, Any], v: Sentinels, source: str) -> dict[str, Any]:
    event.update(eventId=v["event"], timestamp=v["ts"], sessionName=v["session"], nodeId=v[source])
    return event


def _body(event: dict[str, Any]) -> dict[str, Any]:
    return event[body_key_for(event["eventType"])]


class Frame:
    """The values a chunk's rows are rendered from: a column per attempt, or a small table (per
    function, job, node, worker...) and each attempt's index into it."""

    def __init__(self) -> None:
        self.columns: dict[str, pa.Array] = {}
        self.lookups: dict[str, tuple[pa.Array, np.ndarray]] = {}

    def values(self, names: Sequence[str], rows: np.ndarray) -> dict[str, pa.Array]:
        picked = pa.array(rows, pa.int64())
        found: dict[str, pa.Array] = {}
        for name in names:
            if name in self.columns:
                found[name] = self.columns[name].take(picked)
            else:
                table, index = self.lookups[name]
                found[name] = table.take(pa.array(index[rows], pa.int64()))
        return found


def task_name(spec: FunctionSpec) -> str:
    """The name Ray shows for a task: Class.method, the .options(name=...) or Ray Data name, or the function."""
    if spec.actor_class:
        return f"{spec.actor_class}.{spec.function}"
    return spec.task_name or spec.function


def _profile_name(spec: FunctionSpec) -> str:
    """What the worker's profile calls the function: the method, or module.function (__main__'s
    functions under __main__)."""
    return spec.function if spec.actor_class else f"{spec.module}.{spec.function}"


class AttemptTemplates:
    """The shapes of the events Ray sends about a task attempt, each a template built once from a
    real event of the capture (see make_template)."""

    def __init__(self, prototypes: Prototypes) -> None:
        self.prototypes = prototypes
        self.templates: dict[tuple[Any, ...], Template] = {}

    def __getitem__(self, key: tuple[Any, ...]) -> Template:
        if key not in self.templates:
            self.templates[key] = make_template(self._build(key, Sentinels()))
        return self.templates[key]

    def _build(self, key: tuple[Any, ...], v: Sentinels) -> dict[str, Any]:
        kind = key[0]
        if kind == "definition":
            return self._definition(v, actor=key[1])
        if kind == "owner":
            return self._owner(v, key[1], failed=key[2])
        if kind in ("running", "running_log", "log", "actor_running"):
            return self._worker(v, kind)
        return self._profile(v, kind)

    def _definition(self, v: Sentinels, actor: bool) -> dict[str, Any]:
        event = self.prototypes.get("actor_task_definition" if actor else "task_definition")
        body = _body(event)
        descriptor = body["actorFunc" if actor else "taskFunc"]["pythonFunctionDescriptor"]
        descriptor.update(
            moduleName=v["module"], functionName=v["function"], functionHash=v["fhash"], className=v["class_name"]
        )
        body["actorTaskName" if actor else "taskName"] = v["task_name"]
        if actor:
            body["actorId"] = v["actor"]
        body.update(
            taskId=v["task"],
            requiredResources=v["#resources"],
            jobId=v["job"],
            parentTaskId=v["parent_b64"],
            placementGroupId=v["pg_b64"],
            serializedRuntimeEnv=v["runtime_env"],
            taskAttempt=v["attempt"],
            isDetachedActor=v["#detached"],
        )
        return _envelope(event, v, "owner_node")

    def _owner(self, v: Sentinels, states: tuple[str, ...], failed: bool) -> dict[str, Any]:
        """The owner's event for the transitions of one flush; the leased worker comes with SUBMITTED."""
        leased = SUBMITTED_TO_WORKER in states
        event = self.prototypes.get("owner_failed" if failed else "owner_submitted" if leased else "owner_plain")
        body = _body(event)
        body["stateTransitions"] = [{"state": state, "timestamp": v[OWNER_SLOTS[state]]} for state in states]
        body.update(
            taskId=v["task"],
            jobId=v["job"],
            taskAttempt=v["attempt"],
            workerPid=0,
            nodeId=v["exec_node"] if leased else "",
            workerId=v["worker"] if leased else "",
        )
        if failed:
            body["rayErrorInfo"] = v["#error"]
        return _envelope(event, v, "owner_node")

    def _worker(self, v: Sentinels, kind: str) -> dict[str, Any]:
        """The executing worker's events: RUNNING (with its pid), taskLogInfo, or both in one flush."""
        role = {
            "running": "worker_running",
            "running_log": "worker_running_log",
            "log": "worker_log",
            "actor_running": "actor_running",
        }[kind]
        event = self.prototypes.get(role)
        body = _body(event)
        body.update(taskId=v["task"], jobId=v["job"], taskAttempt=v["attempt"])
        if kind == "actor_running":
            body["stateTransitions"] = [
                {"state": "PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY", "timestamp": v["s_patoc"]},
                {"state": "RUNNING", "timestamp": v["s_run"]},
            ]
        elif kind != "log":
            body["stateTransitions"] = [{"state": "RUNNING", "timestamp": v["s_run"]}]
        if kind != "log":
            body["workerPid"] = v["#pid"]
        if kind in ("running_log", "log"):
            body["taskLogInfo"] = {
                "stdoutFile": v["stdout_file"],
                "stderrFile": v["stderr_file"],
                "stdoutStart": v["so"],
                "stdoutEnd": v["eo"],
                "stderrStart": v["se"],
                "stderrEnd": v["ee"],
            }
        return _envelope(event, v, "exec_node")

    def _profile(self, v: Sentinels, kind: str) -> dict[str, Any]:
        """The worker's profile: deserialize, execute, store outputs and the whole task, or fewer
        entries when the task raised (the execute entry then carries the exception)."""
        event = self.prototypes.get(
            {
                "profile": "profile_worker",
                "profile_error": "profile_error",
                "profile_actor_error": "profile_actor_error",
            }[kind]
        )
        body = _body(event)
        body.update(taskId=v["task"], jobId=v["job"], attemptNumber=v["attempt"])
        profile = body["profileEvents"]
        profile.update(componentId=v["worker_b64"], nodeIpAddress=v["ip"])
        spans = {
            "task:deserialize_arguments": ("p_ds", "p_de"),
            "task:execute": ("p_es", "p_ee"),
            "task:store_outputs": ("p_ss", "p_se"),
        }
        for entry in profile["events"]:
            start, end = spans.get(entry["eventName"], ("p_os", "p_oe"))
            entry.update(startTime=v[start], endTime=v[end])
            if entry["eventName"] == "task:execute":
                entry["extraData"] = v["#exc_extra"] if kind != "profile" else "{}"
            elif entry["eventName"].startswith("task::"):
                entry["eventName"] = v["event_name"]
                entry["extraData"] = json.dumps({"name": v["extra_name"], "task_id": v["task_hex"]})
        return _envelope(event, v, "exec_node")


class ErrorTexts:
    """What Ray reports about failed attempts: rayErrorInfo, and for an exception the profile's extraData."""

    def __init__(self, cast: Cast, workers: Workers) -> None:
        self.cast = cast
        self.workers = workers

    def __call__(self, batch: Attempts) -> tuple[pa.Array, pa.Array]:
        """rayErrorInfo (raw JSON) and, for exceptions, the profile's extraData, per failed attempt."""
        errors: list[str | None] = [None] * len(batch)
        extras: list[str | None] = [None] * len(batch)
        for i in np.flatnonzero(batch.outcome != OK).tolist():
            errors[i], extras[i] = self._error_text(batch, i)
        return pa.array(errors, pa.string()), pa.array(extras, pa.string())

    def _error_text(self, batch: Attempts, i: int) -> tuple[str, str | None]:
        cast = self.cast
        spec = cast.functions[int(batch.func[i])]
        proc = self.workers.procs[int(batch.proc[i])]
        node = cast.nodes[int(batch.node[i])]
        outcome = int(batch.outcome[i])
        task_hex = bytes(batch.task[i]).hex()
        if outcome == EXCEPTION:
            return self._exception_text(batch, i, spec, proc, node)
        if outcome == ACTOR_DIED:
            return json_raw(self._actor_died(cast.actors[int(batch.actor[i])])), None
        if outcome == WORKER_DIED:
            message = WORKER_DIED_MESSAGES[int(batch.task[i, 0]) % len(WORKER_DIED_MESSAGES)]
        elif outcome == OOM:
            total = node.memory / 2**30
            message = (
                f"Task was killed due to the node running low on memory.\nMemory on the node (IP: {node.ip}, ID: "
                f"{node.hex}) where the task (task ID: {task_hex}, name={task_name(spec)}, pid={proc.pid}, "
                f"memory used={total * 0.4:.2f}GB) was running was {total * 0.96:.2f}GB / {total:.2f}GB (0.960000), "
                "which exceeds the memory usage threshold of 0.95. Ray killed this worker (ID: "
                f"{proc.hex}) because it was the most recently scheduled task; to see more information about "
                f"memory usage on this node, use `ray logs raylet.out -ip {node.ip}`. To see the logs of the "
                f"worker, use `ray logs worker-{proc.hex}*out -ip {node.ip}.`"
            )
        else:
            message = f"Task: TaskID({task_hex}) was cancelled."
        return json_raw({"errorMessage": message, "errorType": OUTCOME_NAMES[outcome]}), None

    def _exception_text(
        self, batch: Attempts, i: int, spec: FunctionSpec, proc: Proc, node: NodeSpec
    ) -> tuple[str, str]:
        exception, template = EXCEPTIONS[self.cast.exceptions[int(batch.func[i])]]
        message = template.format(n=int.from_bytes(bytes(batch.task[i, :3]), "little"))
        argument = message.strip("'") if exception == "KeyError" else message
        groups = {job.group: job for job in self.cast.jobs}
        module = groups[spec.group].module if spec.module == "__main__" else spec.module
        path = f"/app/{module.replace('.', '/')}.py"
        line = 20 + int(hashlib.blake2b(spec.function.encode(), digest_size=1).digest()[0])
        frame = f'  File "{path}", line {line}, in {spec.function}\n    raise {exception}({argument!r})\n'
        where = f"pid={proc.pid}, ip={node.ip}"
        if spec.actor_class:
            actor = self.cast.actors[int(batch.actor[i])]
            address = int.from_bytes(actor.raw[:5], "little")
            where += f", actor_id={actor.hex}, repr=<{module}.{spec.actor_class} object at 0x7f{address:010x}>"
        name = task_name(spec)
        error = f"User exception:\n\x1b[36mray::{name}()\x1b[39m ({where})\n{frame}{exception}: {message}"
        traceback = (
            'Traceback (most recent call last):\n  File "python/ray/_raylet.pyx", line 2306, in '
            'ray._raylet.execute_task\n  File "python/ray/_raylet.pyx", line 2205, in ray._raylet.execute_task\n'
            f"{frame}{exception}: {message}\n"
        )
        extra = json.dumps({"type": f"<class '{exception}'>", "value": message, "traceback": traceback})
        return json_raw({"errorMessage": error, "errorType": "TASK_EXECUTION_EXCEPTION"}), json_raw(extra)

    def _actor_died(self, actor: ActorSpec) -> dict[str, Any]:
        context = _actor_death_context(self.cast, actor, self.workers.procs[actor.proc])
        return {
            "actorDiedError": {"actorDiedErrorContext": context},
            "errorMessage": context["errorMessage"],
            "errorType": "ACTOR_DIED",
        }


class AttemptRenderer:
    """Every event of a chunk's attempts as rows, split by the node whose agent reported them."""

    def __init__(self, cast: Cast, prototypes: Prototypes, workers: Workers) -> None:
        self.cast = cast
        self.prototypes = prototypes
        self.workers = workers
        self.rng = np.random.default_rng([cast.seed, 3])
        self.templates = AttemptTemplates(prototypes)
        self.error_texts = ErrorTexts(cast, workers)
        span = cast.window_ns[1] - cast.window_ns[0]
        self.rfc3339 = Rfc3339(cast.start_ns - 60 * SECOND, cast.window_ns[1] + max(span, 3600 * SECOND))
        self.owner_phase = self.rng.integers(0, FLUSH_NS, len(cast.jobs))
        self.static = self._static_tables()
        # Told what each task wrote to its worker's files, to write the files themselves (--logs).
        self.log_sink: Callable[[Attempts, np.ndarray, np.ndarray, np.ndarray], None] | None = None

    # values

    def _static_tables(self) -> dict[str, pa.Array]:
        """Per function, job, node and actor: the text their events carry."""
        cast = self.cast
        groups = {job.group: job for job in cast.jobs}
        functions = cast.functions
        names = [task_name(f) for f in functions]
        tables = {
            "module": [json_text(groups[f.group].module if f.module == "__main__" else f.module) for f in functions],
            "function": [json_text(f.function) for f in functions],
            "fhash": [
                "" if f.actor_class else hashlib.md5(f"{f.module}.{f.function}".encode()).hexdigest() for f in functions
            ],
            "class_name": [f.actor_class or "" for f in functions],
            "task_name": [json_text(name) for name in names],
            "event_name": [json_text(f"task::{name}") for name in names],
            "extra_name": [json_text(_profile_name(f)) for f in functions],
            "resources": [json_raw(self._resources(f)) for f in functions],
            "pg_b64": [
                base64.b64encode(cast.placement_groups[f.placement_group].raw).decode()
                if f.placement_group
                else NIL_PLACEMENT_GROUP
                for f in functions
            ],
            "detached": [json_raw(f.actor_class == "_StatsActor") for f in functions],
            "job": [job.hex for job in cast.jobs],
            "parent_b64": [base64.b64encode(job.driver_task).decode() for job in cast.jobs],
            "runtime_env": [json_text(self._runtime_env(job)) for job in cast.jobs],
            "exec_node": [node.hex for node in cast.nodes],
            "ip": [node.ip for node in cast.nodes],
            "actor": [actor.hex for actor in cast.actors] or [""],
        }
        return {name: pa.array(values, pa.string()) for name, values in tables.items()}

    def _resources(self, spec: FunctionSpec) -> dict[str, float]:
        if spec.placement_group is None:
            return dict(spec.resources)
        group = self.cast.placement_groups[spec.placement_group]
        # Inside a placement group Ray rewrites resources to the group's: CPU_group_<id> and a bundle marker.
        bundle = group.bundles[0]
        return {f"bundle_group_{group.hex}": 0.001, **{f"{name}_group_{group.hex}": 1.0 for name in bundle}}

    def _runtime_env(self, job: JobSpec) -> str:
        if job.group != "main":
            return "{}"
        package = hashlib.blake2b(job.hex.encode() + self.cast.session.encode(), digest_size=8).hexdigest()
        return json.dumps({"working_dir": f"gcs://_ray_pkg_{package}.zip", "env_vars": {"OMP_NUM_THREADS": "1"}})

    def _proc_tables(self) -> dict[str, pa.Array]:
        procs = self.workers.procs
        session = self.cast.session
        files = [f"/tmp/ray/{session}/logs/worker-{p.hex}-{p.file_job}-{p.pid}" for p in procs]
        raw = np.frombuffer(b"".join(p.raw for p in procs), np.uint8).reshape(-1, 28)
        return {
            "worker": hex_ids(raw),
            "worker_b64": b64_ids(raw),
            "pid": pa.array([str(p.pid) for p in procs], pa.string()),
            "stdout_file": pa.array([f"{name}.out" for name in files], pa.string()),
            "stderr_file": pa.array([f"{name}.err" for name in files], pa.string()),
        }

    # rows

    def render(self, batch: Attempts) -> Iterator[tuple[int, pa.Table]]:
        """(node index, rows) for every event of the batch's attempts."""
        frame = self._frame(batch)
        yield from self._definitions(batch, frame)
        yield from self._owner_events(batch, frame)
        yield from self._worker_events(batch, frame)
        yield from self._profiles(batch, frame)

    def _frame(self, batch: Attempts) -> Frame:
        frame = Frame()
        task = hex_ids(batch.task)
        frame.columns.update(task=task, task_hex=task, attempt=pa.array(batch.attempt, pa.int32()))
        text = self.rfc3339
        frame.columns.update(
            s_pa=text(batch.t_pa),
            s_pna=text(batch.t_pna),
            s_stw=text(batch.t_stw),
            s_end=text(batch.t_end),
            s_run=text(batch.t_run),
            s_patoc=text((batch.t_stw + batch.rel["patoc"]) | 1),
        )
        for slot, phase in (
            ("p_os", "outer_s"),
            ("p_ds", "deser_s"),
            ("p_de", "deser_e"),
            ("p_es", "exec_s"),
            ("p_ee", "exec_e"),
            ("p_ss", "store_s"),
            ("p_se", "store_e"),
            ("p_oe", "outer_e"),
        ):
            frame.columns[slot] = decimal19(batch.at(phase))
        for slot, offsets in zip(("so", "eo", "se", "ee"), self._log_offsets(batch), strict=True):
            frame.columns[slot] = int_text(offsets)
        errors, extras = self.error_texts(batch)
        frame.columns.update(error=errors, exc_extra=extras)
        static = self.static
        by_function = (
            "module",
            "function",
            "fhash",
            "class_name",
            "task_name",
            "event_name",
            "extra_name",
            "resources",
            "pg_b64",
            "detached",
        )
        frame.lookups.update({name: (static[name], batch.func) for name in by_function})
        frame.lookups.update({name: (static[name], batch.job) for name in ("job", "parent_b64", "runtime_env")})
        frame.lookups.update({name: (static[name], batch.node) for name in ("exec_node", "ip")})
        frame.lookups["actor"] = (static["actor"], np.maximum(batch.actor, 0))
        frame.lookups.update({name: (table, batch.proc) for name, table in self._proc_tables().items()})
        return frame

    def _emit(
        self,
        key: tuple[Any, ...],
        batch: Attempts,
        frame: Frame,
        rows: np.ndarray,
        ts: np.ndarray,
        on_worker: bool,
        payload_key: np.ndarray | None = None,
    ) -> Iterator[tuple[int, pa.Table]]:
        """Events of one shape, a table per reporting node: the owners' (the drivers, on the head) or
        the executing workers' nodes. Slices of one table would keep every node's rows in memory
        until the last node's part is shipped."""
        if not len(rows):
            return
        if not on_worker:
            yield 0, self._table(key, frame, rows, ts, payload_key)
            return
        nodes = batch.node[rows]
        for node in np.unique(nodes).tolist():
            yield node, self._table(key, frame, rows[nodes == node], ts, payload_key)

    def _table(
        self, key: tuple[Any, ...], frame: Frame, rows: np.ndarray, ts: np.ndarray, payload_key: np.ndarray | None
    ) -> pa.Table:
        """`rows` as events of the shape `key`. With `payload_key`, the payload depends on that key
        only: it is rendered once per distinct key and repeated."""
        template = self.templates[key]
        count = len(rows)
        columns = sorted(set(template.columns.values()) - EVENT_SLOTS)
        payload = None
        if payload_key is None:
            values = frame.values(sorted({*columns, *template.slots}), rows)
        else:
            values = frame.values(columns, rows)
            _, first, inverse = np.unique(payload_key[rows], return_index=True, return_inverse=True)
            distinct = render_payload(template, len(first), frame.values(template.slots, rows[first]))
            payload = distinct.take(pa.array(inverse.ravel(), pa.int64()))
        values["event"] = hex_ids(np.frombuffer(self.rng.bytes(28 * count), np.uint8).reshape(count, 28))
        values["ts"] = pa.array(ts[rows], pa.int64())
        values["session"] = pa.repeat(pa.scalar(self.cast.session), count)
        values["owner_node"] = pa.repeat(pa.scalar(self.cast.head.hex), count)
        return render_table(template, count, values, payload)

    def _definitions(self, batch: Attempts, frame: Frame) -> Iterator[tuple[int, pa.Table]]:
        combo = batch.func.astype(np.int64) * len(self.cast.jobs) + batch.job
        for actor in (False, True):
            rows = np.flatnonzero((batch.actor >= 0) == actor)
            yield from self._emit(("definition", actor), batch, frame, rows, batch.t_pa, False, combo)

    def _owner_events(self, batch: Attempts, frame: Frame) -> Iterator[tuple[int, pa.Table]]:
        """The owner reports each attempt's transitions in the 1 s flushes they fall into."""
        phase = self.owner_phase[batch.job]
        times = (batch.t_pa, batch.t_pna, batch.t_stw, batch.t_end)
        flush = [(t - phase) // FLUSH_NS for t in times]
        pattern = sum((flush[k + 1] != flush[k]).astype(np.int64) << k for k in range(3))
        failed = batch.outcome != OK
        names = (PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER)
        for code in np.unique(pattern).tolist():
            rows = np.flatnonzero(pattern == code)
            for group in _flush_groups(code):
                ts = times[group[-1]]
                if group[-1] != 3:
                    key = ("owner", tuple(names[k] for k in group), False)
                    yield from self._emit(key, batch, frame, rows, ts, False)
                    continue
                for ended_failed in (False, True):
                    states = (*(names[k] for k in group[:-1]), "FAILED" if ended_failed else "FINISHED")
                    picked = rows[failed[rows] == ended_failed]
                    yield from self._emit(("owner", states, ended_failed), batch, frame, picked, ts, False)

    def _worker_events(self, batch: Attempts, frame: Frame) -> Iterator[tuple[int, pa.Table]]:
        normal = batch.actor < 0
        ran = normal & batch.running_reported
        logged = normal & np.isin(batch.outcome, (OK, EXCEPTION, CANCELLED))
        phase = (batch.proc.astype(np.int64) * 2654435761) % FLUSH_NS
        t_log = batch.at("log")
        together = ran & logged & ((batch.t_run - phase) // FLUSH_NS == (t_log - phase) // FLUSH_NS)
        yield from self._emit(("running",), batch, frame, np.flatnonzero(ran & ~together), batch.t_run, True)
        yield from self._emit(("running_log",), batch, frame, np.flatnonzero(together), t_log, True)
        yield from self._emit(("log",), batch, frame, np.flatnonzero(logged & ~together), t_log, True)
        actor_ran = (batch.actor >= 0) & np.isin(batch.outcome, (OK, EXCEPTION))
        yield from self._emit(("actor_running",), batch, frame, np.flatnonzero(actor_ran), batch.t_run, True)

    def _profiles(self, batch: Attempts, frame: Frame) -> Iterator[tuple[int, pa.Table]]:
        ts = batch.at("deser_s")
        raised = batch.outcome == EXCEPTION
        is_actor = batch.actor >= 0
        yield from self._emit(("profile",), batch, frame, np.flatnonzero(batch.outcome == OK), ts, True)
        yield from self._emit(("profile_error",), batch, frame, np.flatnonzero(raised & ~is_actor), ts, True)
        yield from self._emit(("profile_actor_error",), batch, frame, np.flatnonzero(raised & is_actor), ts, True)

    def output_sizes(self, batch: Attempts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(marker, stdout, stderr) bytes of each attempt: what Ray and the task wrote to the worker's files."""
        markers = np.array([len(f":task_name:{task_name(f)}\n") for f in self.cast.functions])
        lines = np.array([len(_print_line(task_name(f))) for f in self.cast.functions])
        prints = np.array([f.prints for f in self.cast.functions])
        seed = np.frombuffer(batch.task[:, :8].tobytes(), np.uint64) ^ batch.attempt.astype(np.uint64)
        # Derived from the task id, so that logs written later agree with the offsets reported here.
        draws = np.random.default_rng(int(seed.sum() % (1 << 63))).random((2, len(batch)))
        count = np.floor(-np.log(np.maximum(draws[0], 1e-12)) * prints[batch.func]).astype(np.int64)
        warned = (draws[1] < 0.02).astype(np.int64)
        return markers[batch.func], count * lines[batch.func], warned * len(WARNING_LINE)

    def _log_offsets(self, batch: Attempts) -> tuple[np.ndarray, ...]:
        offsets = [np.zeros(len(batch), np.int64) for _ in range(4)]
        rows = np.flatnonzero((batch.actor < 0) & np.isin(batch.outcome, (OK, EXCEPTION, CANCELLED)))
        if len(rows):
            markers, out, err = self.output_sizes(batch)
            found = self.workers.log_offsets(batch, rows, out[rows], err[rows], markers[rows])
            if self.log_sink is not None:
                self.log_sink(batch, rows, out[rows], err[rows])
            for target, values in zip(offsets, found, strict=True):
                target[rows] = values
        return tuple(offsets)


WORKER_DIED_MESSAGES = (
    "",
    "RpcError: RPC error: Socket closed rpc_code: 14",
    "The worker died unexpectedly while executing this task. Check python-core-worker-*.log files for more "
    "information.",
)
WARNING_LINE = "/app/pipeline.py:88: UserWarning: batch of 4096 rows exceeds the recommended 1024\n"


def _print_line(name: str) -> str:
    """What a task prints: a line per batch it processed."""
    return f"[{name}] done: 4096 records in batch\n"


def _flush_groups(pattern: int) -> list[list[int]]:
    """The owner's four transitions (submitted, pending node, leased, ended) cut where bit k of
    `pattern` says transitions k and k + 1 fell into different flushes."""
    groups = [[0]]
    for k in range(3):
        if pattern >> k & 1:
            groups.append([])
        groups[-1].append(k + 1)
    return groups


ACTOR_DEATHS = {
    "owner": (
        "OWNER_DIED",
        "The actor is dead because its owner has died. Owner Id: {owner} Owner Ip address: "
        "{ip} Owner worker exit type: INTENDED_USER_EXIT Worker exit detail: Owner's worker process has "
        "crashed.",
    ),
    "kill": ("RAY_KILL", "The actor is dead because it was killed by `ray.kill`."),
    "crash": (
        "WORKER_DIED",
        "The actor is dead because its worker process has died. Worker exit type: "
        "SYSTEM_ERROR Worker exit detail: " + _WORKER_DEATHS[0][1],
    ),
    "exit": (
        "WORKER_DIED",
        "The actor is dead because its worker process has died. Worker exit type: "
        "INTENDED_USER_EXIT Worker exit detail: Worker exits by an user request. Worker exits with an exit "
        "code 0. exit_actor() is called.",
    ),
}


def _actor_death_context(cast: Cast, actor: ActorSpec, proc: Proc) -> dict[str, Any]:
    job = cast.jobs[actor.job]
    owner = base64.b64encode(job.driver_worker).decode()
    reason, message = ACTOR_DEATHS[actor.death]
    return {
        "errorMessage": message.format(owner=job.driver_worker.hex(), ip=cast.head.ip),
        "ownerId": owner,
        "ownerIpAddress": cast.head.ip,
        "nodeIpAddress": cast.nodes[actor.node].ip,
        "pid": proc.pid,
        "rayNamespace": actor.ray_namespace,
        "className": actor.class_name,
        "actorId": base64.b64encode(actor.raw).decode(),
        "reason": reason,
        "name": actor.name,
        "neverStarted": False,
    }


# --- everything else: nodes, workers, actors, drivers, jobs, dashboard polls -------------------------
# Thousands of events, not millions: built as real events (prototype copies) and mapped one by one.

NodeRows = list[tuple[int, dict[str, Any]]]  # (reporting node, row)
SUPERVISOR_ENTRY = "ray.dashboard.modules.job.job_supervisor"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _ms(ns: int) -> str:
    return str(ns // MS)


class _EventSource:
    """Builds events from prototypes: a fresh id, the session, the reporting node (GCS's: the head)."""

    def __init__(self, cast: Cast, prototypes: Prototypes, workers: Workers, stream: int) -> None:
        self.cast = cast
        self.prototypes = prototypes
        self.workers = workers
        self.rng = np.random.default_rng([cast.seed, stream])

    def _event(self, role: str, ts_ns: int, node: int = 0) -> dict[str, Any]:
        """A prototype with a fresh id, the session and the reporting node; GCS events come from the head."""
        event = self.prototypes.get(role)
        event.update(
            eventId=_b64(self.rng.bytes(28)),
            timestamp=format_timestamp(ts_ns | 1),
            sessionName=self.cast.session,
            nodeId=_b64(self.cast.nodes[node].raw),
        )
        return event

    def _rows(self, events: list[tuple[int, dict[str, Any]]]) -> NodeRows:
        return [(node, ray_event_to_row(event)) for node, event in events]


class ClusterEvents(_EventSource):
    """The nodes, the workers and the actors of the session (GCS events, and actors' creation tasks)."""

    def __init__(self, cast: Cast, prototypes: Prototypes, workers: Workers) -> None:
        super().__init__(cast, prototypes, workers, 4)

    def nodes(self) -> NodeRows:
        events = []
        for node in self.cast.nodes:
            definition = self._event("node_definition", node.join_ns)
            body = _body(definition)
            body.update(
                nodeId=_b64(node.raw),
                nodeIpAddress=node.ip,
                labels={"ray.io/node-id": node.hex},
                startTimestamp=format_timestamp(node.join_ns // MS * MS),
                hostname=node.pod,
                nodeName=node.ip,
            )
            events.append((0, definition))
            events.append((0, self._node_state(node, node.join_ns + 5 * US, "ALIVE", "UNSPECIFIED")))
            if node.leave_ns is not None:
                events.append((0, self._node_state(node, node.leave_ns - 30 * SECOND, "ALIVE", "DRAINING")))
                events.append((0, self._node_state(node, node.leave_ns, "DEAD", "UNSPECIFIED")))
        return self._rows(events)

    def _node_state(self, node: NodeSpec, ts_ns: int, state: str, sub_state: str) -> dict[str, Any]:
        event = self._event("node_lifecycle", ts_ns)
        body = _body(event)
        body["nodeId"] = _b64(node.raw)
        transition = body["stateTransitions"][0]
        transition.update(
            timestamp=format_timestamp(ts_ns | 1),
            resources=self._resources(node) if state == "ALIVE" else {},
            state=state,
            aliveSubState=sub_state,
        )
        if state == "DEAD":
            # A spot node taken back by the cloud: Ray drains it first, so nothing runs on it at the end.
            transition["deathInfo"] = {
                "reason": "AUTOSCALER_DRAIN_PREEMPTED",
                "reasonMessage": "The node was preempted by the cloud provider.",
            }
        return event

    @staticmethod
    def _resources(node: NodeSpec) -> dict[str, float]:
        resources: dict[str, float] = {f"node:{node.ip}": 1.0, "memory": node.memory}
        if node.cpus and (not node.is_head or node.gpus == 0):
            resources["CPU"] = float(node.cpus)
        resources["object_store_memory"] = node.object_store
        if node.gpus:
            resources.update({"GPU": float(node.gpus), "accelerator_type:A10G": 1.0})
        if node.is_head:
            resources["node:__internal_head__"] = 1.0
        return resources

    def workers_changed(self) -> NodeRows:
        """Definition and ALIVE of workers started, DEAD of workers ended, since the last call."""
        fresh, ended = self.workers.drain()
        events = []
        for index in fresh:
            proc = self.workers.procs[index]
            definition = self._event("worker_definition", proc.start_ns)
            _body(definition).update(workerId=_b64(proc.raw), nodeId=_b64(self.cast.nodes[proc.node].raw), pid=proc.pid)
            events.append((0, definition))
            alive = self._event("worker_alive", proc.start_ns + 3 * US)
            body = _body(alive)
            body.update(workerId=_b64(proc.raw), jobId="")
            launched = proc.start_ns - int(self.rng.integers(800, 2000)) * MS
            body["stateTransitions"][0].update(
                timestamp=format_timestamp(proc.start_ns + 4 * US),
                workerLaunchTimeMs=_ms(launched),
                workerLaunchedTimeMs=_ms(proc.start_ns - 60 * MS),
                startTimeMs=_ms(proc.start_ns),
            )
            events.append((0, alive))
        for index in ended:
            proc = self.workers.procs[index]
            assert proc.end_ns is not None
            dead = self._event("worker_dead", proc.end_ns)
            body = _body(dead)
            body.update(workerId=_b64(proc.raw), jobId=_b64(self.cast.jobs[proc.job].raw) if proc.job >= 0 else "")
            body["stateTransitions"][0].update(
                timestamp=format_timestamp(proc.end_ns + 2 * US),
                endTimeMs=_ms(proc.end_ns),
                deathInfo={"exitType": proc.exit_type, "exitDetail": proc.exit_detail},
            )
            events.append((0, dead))
        return self._rows(events)

    def actors(self) -> NodeRows:
        events: list[tuple[int, dict[str, Any]]] = []
        for actor in self.cast.actors:
            events.extend(self._actor(actor))
            events.extend(self._creation_task(actor))
        return self._rows(events)

    def _actor(self, actor: ActorSpec) -> list[tuple[int, dict[str, Any]]]:
        job = self.cast.jobs[actor.job]
        definition = self._event("actor_definition", actor.create_ns)
        _body(definition).update(
            actorId=_b64(actor.raw),
            jobId=_b64(job.raw),
            isDetached=actor.detached,
            name=actor.name,
            rayNamespace=actor.ray_namespace,
            serializedRuntimeEnv="{}",
            className=actor.class_name,
            requiredResources={"GPU": 1.0}
            if actor.class_name == "Trainer" and self.cast.nodes[actor.node].gpus
            else {},
        )
        pending = self._event("actor_pending", actor.create_ns + 2 * US)
        body = _body(pending)
        body["actorId"] = _b64(actor.raw)
        for offset, transition in enumerate(body["stateTransitions"]):
            transition["timestamp"] = format_timestamp(actor.create_ns + (3 + offset * 2400) * US)
        alive = self._event("actor_alive", actor.alive_ns)
        body = _body(alive)
        proc = self.workers.procs[actor.proc]
        body["actorId"] = _b64(actor.raw)
        body["stateTransitions"][0].update(
            timestamp=format_timestamp(actor.alive_ns + 2 * US),
            nodeId=_b64(self.cast.nodes[actor.node].raw),
            workerId=_b64(proc.raw),
            pid=proc.pid,
            port=actor.port,
            reprName="",
        )
        events = [(0, definition), (0, pending), (0, alive)]
        if actor.death_ns is not None:
            dead = self._event("actor_dead", actor.death_ns)
            body = _body(dead)
            body["actorId"] = _b64(actor.raw)
            transition = body["stateTransitions"][0]
            transition["timestamp"] = format_timestamp(actor.death_ns + 2 * US)
            transition["deathCause"] = {"actorDiedErrorContext": _actor_death_context(self.cast, actor, proc)}
            events.append((0, dead))
        return events

    def _creation_task(self, actor: ActorSpec) -> list[tuple[int, dict[str, Any]]]:
        """The actor's __init__: defined and submitted by its owner, run by its worker."""
        job = self.cast.jobs[actor.job]
        task = b"\xff" * 8 + actor.raw
        name = f"{actor.name}:{actor.class_name}.__init__" if actor.name else f"{actor.class_name}.__init__"
        module = job.module if actor.module == "__main__" else actor.module
        definition = self._event("creation_definition", actor.create_ns)
        body = _body(definition)
        body["taskFunc"]["pythonFunctionDescriptor"].update(
            moduleName=module,
            className=actor.class_name,
            functionName="__init__",
            functionHash=hashlib.md5(f"{module}.{actor.class_name}".encode()).hexdigest(),
        )
        body.update(
            taskId=_b64(task),
            taskName=name,
            jobId=_b64(job.raw),
            parentTaskId=_b64(job.driver_task),
            isDetachedActor=actor.detached,
        )
        submitted = self._owner_transitions(actor, task, actor.create_ns, [PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT])
        proc = self.workers.procs[actor.proc]
        running = self._event("worker_running", actor.alive_ns - 80 * MS, actor.node)
        body = _body(running)
        body.update(taskId=_b64(task), jobId=_b64(job.raw), workerPid=proc.pid)
        body["stateTransitions"][0]["timestamp"] = format_timestamp(actor.alive_ns - 80 * MS)
        finished = self._owner_transitions(actor, task, actor.alive_ns - 3 * MS, ["FINISHED"])
        return [(0, definition), (0, submitted), (actor.node, running), (0, finished)]

    def _owner_transitions(self, actor: ActorSpec, task: bytes, ts_ns: int, states: list[str]) -> dict[str, Any]:
        event = self._event("owner_plain", ts_ns + 10 * US * len(states))
        body = _body(event)
        body.update(taskId=_b64(task), jobId=_b64(self.cast.jobs[actor.job].raw))
        body["stateTransitions"] = [
            {"state": state, "timestamp": format_timestamp(ts_ns + 10 * US * i)} for i, state in enumerate(states)
        ]
        return event


class JobEvents(_EventSource):
    """The drivers and jobs: driver tasks and their submit_task profiles, driver jobs, submission
    status (the export file the collector tails), and the collector's polls of /api/jobs/ and of the
    placement groups."""

    def __init__(self, cast: Cast, prototypes: Prototypes, workers: Workers) -> None:
        super().__init__(cast, prototypes, workers, 9)
        self.driver_phase = self.rng.integers(0, FLUSH_NS, len(cast.jobs))

    def drivers(self, job_ends: Mapping[int, int]) -> NodeRows:
        """Each driver's task (RUNNING while it lives) and its driver job (CREATED, FINISHED)."""
        events: list[tuple[int, dict[str, Any]]] = []
        for index, job in enumerate(self.cast.jobs):
            if not job.driver:
                continue
            end = job_ends.get(index)
            definition = self._event("driver_definition", job.start_ns)
            _body(definition).update(taskId=_b64(job.driver_task), jobId=_b64(job.raw))
            running = self._event("driver_running", job.start_ns)
            body = _body(running)
            body.update(taskId=_b64(job.driver_task), jobId=_b64(job.raw))
            body["stateTransitions"][0]["timestamp"] = format_timestamp(job.start_ns | 1)
            events += [(0, definition), (0, running)]
            if job.group == "internal":
                continue  # the dashboard's own driver: no driver job events, and it never finishes
            if end is not None:
                finished = self._event("driver_running", end)
                body = _body(finished)
                body.update(taskId=_b64(job.driver_task), jobId=_b64(job.raw))
                body["stateTransitions"] = [{"state": "FINISHED", "timestamp": format_timestamp(end | 1)}]
                events.append((0, finished))
            events.extend(self._driver_job(job, end))
        return self._rows(events)

    def _driver_job(self, job: JobSpec, end: int | None) -> list[tuple[int, dict[str, Any]]]:
        submitted = job.submission_id is not None
        definition = self._event("driver_job_submission" if submitted else "driver_job_direct", job.start_ns)
        body = _body(definition)
        metadata = (
            {**job.metadata, "job_submission_id": job.submission_id, "job_name": job.submission_id} if submitted else {}
        )
        body.update(
            jobId=_b64(job.raw),
            driverPid=str(job.driver_pid),
            driverNodeId=_b64(self.cast.head.raw),
            entrypoint=job.entrypoint,
            config={"serializedRuntimeEnv": "{}", "metadata": metadata},
        )
        events = [(0, definition)]
        for state, at in (("CREATED", job.start_ns), ("FINISHED", end)):
            if at is None:
                continue
            lifecycle = self._event("driver_job_lifecycle", at + 3 * US)
            body = _body(lifecycle)
            body.update(
                jobId=_b64(job.raw), stateTransitions=[{"state": state, "timestamp": format_timestamp(at + 4 * US)}]
            )
            events.append((0, lifecycle))
        return events

    def driver_profiles(self, batch: Attempts) -> NodeRows:
        """The drivers' submit_task spans, a profile event per driver per flush (at most 16 spans each)."""
        events = []
        first = batch.attempt == 0
        for index in np.unique(batch.job[first]).tolist():
            job = self.cast.jobs[index]
            submitted = np.sort(batch.t_pa[first & (batch.job == index)])
            flush = (submitted - self.driver_phase[index]) // FLUSH_NS
            starts = np.flatnonzero(np.r_[True, flush[1:] != flush[:-1]])
            for begin, stop in zip(starts.tolist(), [*starts[1:].tolist(), len(submitted)], strict=True):
                spans = submitted[begin : min(stop, begin + 16)].tolist()
                event = self._event("profile_driver", spans[0] - 300 * US)
                body = _body(event)
                body.update(taskId=_b64(job.driver_task), jobId=_b64(job.raw))
                profile = body["profileEvents"]
                profile.update(componentId=_b64(job.driver_worker), nodeIpAddress=self.cast.head.ip)
                template = profile["events"][0]
                profile["events"] = [
                    {**template, "startTime": str((t - 300 * US) | 1), "endTime": str((t - 20 * US) | 1)} for t in spans
                ]
                events.append((0, event))
        return self._rows(events)

    def submissions(self, job_ends: Mapping[int, int]) -> NodeRows:
        """EXPORT_SUBMISSION_JOB lines as the head's collector tails them (PENDING, RUNNING, final)."""
        rows: NodeRows = []
        head = self.cast.head
        for index, job in enumerate(self.cast.jobs):
            if job.submission_id is None:
                continue
            for status, at, data in self._submission_states(index, job, job_ends):
                line = {
                    "event_id": self._export_id(),
                    "timestamp": at // SECOND,
                    "source_type": "EXPORT_SUBMISSION_JOB",
                    "event_data": {"submission_job_id": job.submission_id, "status": status, **data},
                }
                rows.append((0, export_event_to_row(line, self.cast.session, head.hex)))
        return rows

    def _export_id(self) -> str:
        alphabet = "0123456789abcdefABCDEF"
        return "".join(alphabet[i] for i in self.rng.integers(0, len(alphabet), 18))

    def _submission_states(
        self, index: int, job: JobSpec, job_ends: Mapping[int, int]
    ) -> list[tuple[str, int, dict[str, Any]]]:
        submitted = job.start_ns - 4 * SECOND
        base = {
            "entrypoint": job.entrypoint,
            "start_time": _ms(submitted),
            "metadata": job.metadata,
            "runtime_env_json": "{}",
        }
        driver = {
            "driver_agent_http_address": f"http://{self.cast.head.ip}:52365",
            "driver_node_id": self.cast.head.hex,
        }
        states = [
            ("PENDING", submitted, {**base, "message": "Job has not started yet."}),
            ("RUNNING", submitted + 2 * SECOND, {**base, "message": "Job is currently running.", **driver}),
        ]
        if not job.driver:
            end = job.end_ns
            states.append(
                (
                    "FAILED",
                    end,
                    {
                        **base,
                        **driver,
                        "message": _ENTRYPOINT_FAILURE.format(job=job),
                        "error_type": "JOB_ENTRYPOINT_COMMAND_ERROR",
                        "end_time": _ms(end),
                        "driver_exit_code": 1,
                    },
                )
            )
        elif index in job_ends:
            end = job_ends[index] + SECOND
            states.append(
                (
                    "SUCCEEDED",
                    end,
                    {
                        **base,
                        **driver,
                        "message": "Job finished successfully.",
                        "end_time": _ms(end),
                        "driver_exit_code": 0,
                    },
                )
            )
        return states

    def dashboard_jobs(self, job_ends: Mapping[int, int], end_ns: int) -> NodeRows:
        """DASHBOARD_JOB rows: /api/jobs/ as polled every 30 s, stored when the answer changed."""
        changes = sorted(
            {
                t
                for index, job in enumerate(self.cast.jobs)
                if job.group != "internal"
                for t in self._job_changes(index, job, job_ends)
            }
        )
        rows: NodeRows = []
        for at in self._poll_times(changes, end_ns):
            answer = [
                self._job_entry(i, job, job_ends, at)
                for i, job in enumerate(self.cast.jobs)
                if job.group != "internal" and job.start_ns - 4 * SECOND <= at
            ]
            for row in dashboard_answer_to_rows("jobs", answer, self.cast.session, self.cast.head.hex, at):
                rows.append((0, row))
        return rows

    def _job_changes(self, index: int, job: JobSpec, job_ends: Mapping[int, int]) -> list[int]:
        end = job_ends.get(index, job.end_ns if not job.driver else None)
        return [job.start_ns - 4 * SECOND, job.start_ns, *([end + SECOND] if end is not None else [])]

    def _poll_times(self, changes: list[int], end_ns: int) -> list[int]:
        """The first poll after each change: every 30 s from the head collector's start, and once
        more when it is stopped (at `end_ns`)."""
        origin = self.cast.start_ns + 20 * SECOND
        return sorted({min(origin + -(-(t - origin) // POLL_NS) * POLL_NS, end_ns) for t in changes})

    def _job_entry(self, index: int, job: JobSpec, job_ends: Mapping[int, int], at: int) -> dict[str, Any]:
        submitted = job.start_ns - 4 * SECOND
        end = job_ends.get(index, job.end_ns) + SECOND if job.driver else job.end_ns
        started = job.driver and at >= job.start_ns
        done = at >= end
        if job.submission_id is None:
            status, message = ("SUCCEEDED" if done else "RUNNING"), None
        elif not job.driver:
            status = "FAILED" if done else "RUNNING" if at >= submitted + 2 * SECOND else "PENDING"
            message = _ENTRYPOINT_FAILURE.format(job=job) if done else "Job is currently running."
        else:
            status = "SUCCEEDED" if done else "RUNNING" if started else "PENDING"
            message = {
                "SUCCEEDED": "Job finished successfully.",
                "RUNNING": "Job is currently running.",
                "PENDING": "Job has not started yet.",
            }[status]
        driver_info = {"id": job.hex, "node_ip_address": self.cast.head.ip, "pid": str(job.driver_pid)}
        submission = job.submission_id is not None
        return {
            "type": "SUBMISSION" if submission else "DRIVER",
            "job_id": job.hex if started else None,
            "submission_id": job.submission_id,
            "driver_info": driver_info if started else None,
            "status": status,
            "entrypoint": job.entrypoint,
            "message": message,
            "error_type": "JOB_ENTRYPOINT_COMMAND_ERROR" if status == "FAILED" else None,
            "start_time": (submitted if submission else job.start_ns) // MS,
            "end_time": end // MS if done else None,
            "metadata": job.metadata,
            "runtime_env": {},
            "driver_agent_http_address": f"http://{self.cast.head.ip}:52365" if submission else None,
            "driver_node_id": self.cast.head.hex if submission else None,
            "driver_exit_code": (1 if status == "FAILED" else 0) if done and submission else None,
        }

    def dashboard_placement_groups(self, end_ns: int) -> NodeRows:
        """DASHBOARD_PLACEMENT_GROUP rows: the state API's list, polled, with the strategy from the GCS log."""
        groups = list(self.cast.placement_groups.values())
        changes = [t for group in groups for t in (group.create_ns, group.removed_ns)]
        rows: NodeRows = []
        for at in self._poll_times(changes, end_ns):
            listed = [self._group_entry(group, at) for group in groups if group.create_ns <= at]
            answer = {
                "result": True,
                "msg": "",
                "data": {
                    "result": {
                        "total": len(listed),
                        "num_after_truncation": len(listed),
                        "num_filtered": len(listed),
                        "result": listed,
                        "partial_failure_warning": "",
                        "warnings": None,
                    }
                },
            }
            for row in dashboard_answer_to_rows("placement_groups", answer, self.cast.session, self.cast.head.hex, at):
                rows.append((0, row))
        return rows

    def _group_entry(self, group: PlacementGroupSpec, at: int) -> dict[str, Any]:
        removed = at >= group.removed_ns
        bundles = [
            {
                "bundle_id": {"placement_group_id": group.hex, "bundle_index": i},
                "unit_resources": bundle,
                "node_id": self.cast.nodes[group.nodes[i]].hex,
                "label_selector": {},
            }
            for i, bundle in enumerate(group.bundles)
        ]
        latency = int(self.rng.integers(2000, 9000))
        return {
            "placement_group_id": group.hex,
            "name": group.name,
            "creator_job_id": self.cast.jobs[group.job].hex,
            "state": "REMOVED" if removed else "CREATED",
            "bundles": bundles,
            "is_detached": False,
            "stats": {
                "creation_request_received_ns": str(group.create_ns),
                "scheduling_started_time_ns": str(group.create_ns + 4 * MS),
                "scheduling_latency_us": str(latency),
                "end_to_end_creation_latency_us": str(latency + 4000),
                "scheduling_attempt": 1,
                "scheduling_state": "REMOVED" if removed else "FINISHED",
                "highest_retry_delay_ms": 0.0,
            },
            "topology_strategy": {},
            "topology_assignments": {},
            "strategy": group.strategy,
        }


_ENTRYPOINT_FAILURE = (
    "Job entrypoint command failed with exit code 1, last available logs (truncated to 20,000 chars):\n"
    "Running entrypoint for job {job.submission_id}: {job.entrypoint}\nTraceback (most recent call last):\n"
    '  File "/app/{job.module}.py", line 3, in <module>\n    import pyarrow.dataset\n'
    "ModuleNotFoundError: No module named 'pyarrow.dataset'\n"
)


# --- writing: parts, documents ------------------------------------------------------------------


def put_object(storage: Storage, key: str, data: bytes, ref: SessionRef, kind: str) -> None:
    """Store an object; on a local folder, without LocalStorage's fsyncs (a benchmark set-up needs no
    durability, and fsyncing made 10,000 sessions' documents take minutes: 90 objects/s here)."""
    if isinstance(storage, LocalStorage):
        path = storage.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return
    storage.put(key, data, tags=layout.object_tags(kind, ref))


def journal(storage: Storage, ref: SessionRef) -> None:
    """The change marker a writer of the session's documents puts after them (archive.changes), by this clock."""
    put_object(storage, changes.change_key(ref, changes.now_ms(), secrets.token_hex(4)), b"", ref, "changes")


@dataclass
class PartStats:
    rows: int = 0
    parts: int = 0
    bytes: int = 0


def _sorted(kind: PartKind, tables: list[pa.Table]) -> pa.Table:
    """A part's rows in the collector's order: events by type then time, metrics by series then time,
    log lines as read. Grouping a kind's rows lets zstd find the repeats."""
    table = pa.concat_tables(tables)
    tables.clear()  # the caller's list would otherwise keep the unsorted rows alive beside the sorted copy
    if kind == "logs":
        return table.combine_chunks()
    if kind == "metrics":
        return table.sort_by([("name", "ascending"), ("labels", "ascending"), ("timestamp", "ascending")])
    # Arrow's sort on a string key is slow (2 s for 300k rows); the types are few, so numpy sorts
    # (type rank, time) instead.
    types = pc.dictionary_encode(table["event_type"]).combine_chunks()
    names = types.dictionary.to_pylist()
    rank = np.argsort(np.argsort(names))
    keys = rank[types.indices.to_numpy()]
    order = np.lexsort((table["timestamp"].cast(pa.int64()).to_numpy(), keys))
    return table.take(pa.array(order)).combine_chunks()


class PartWriter:
    """Collects each node's rows until a part is full, then sorts, compresses and stores it on a
    background thread (Arrow and zstd release the GIL), with at most two parts in flight."""

    def __init__(self, storage: Storage, cast: Cast, rows_per_part: int, progress: Callable[[str], None]) -> None:
        self.storage = storage
        self.cast = cast
        self.rows_per_part = rows_per_part
        self.progress = progress
        self.buffers: dict[tuple[PartKind, int], list[pa.Table]] = {}
        self.buffered: Counter[tuple[PartKind, int]] = Counter()
        self.sequence: Counter[tuple[PartKind, int]] = Counter()
        self.stats: dict[tuple[PartKind, int], PartStats] = {}
        self.event_types: Counter[str] = Counter()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parts")
        self.in_flight: deque[Future[tuple[PartKind, int, int, int]]] = deque()
        # The collector names parts {spool id}-{segment}: its spool id is its start time in ms.
        self.spool_ids = [f"{node.join_ns // MS:013d}" for node in cast.nodes]

    def add(self, kind: PartKind, node: int, table: pa.Table) -> None:
        if not table.num_rows:
            return
        key = (kind, node)
        if kind == "events":
            for item in pc.value_counts(table["event_type"]).to_pylist():
                self.event_types[item["values"]] += item["counts"]
        self.buffers.setdefault(key, []).append(table)
        self.buffered[key] += table.num_rows
        if self.buffered[key] >= self.rows_per_part:
            self.flush(*key)
        elif self.buffered.total() > BUFFERED_PARTS * self.rows_per_part:
            # Many nodes each filling a part would hold many parts in memory: ship the fullest early.
            self.flush(*max(self.buffered, key=self.buffered.__getitem__))

    def add_rows(self, rows: NodeRows) -> None:
        """Rows built one by one (EntityEvents), grouped into a table per node. Like the collector
        within a segment, a row whose event id was already added here is dropped (an unchanged
        placement group in two dashboard answers has the same content-hash id)."""
        by_node: dict[int, list[dict[str, Any]]] = {}
        seen: set[str] = set()
        for node, row in rows:
            if row["event_id"] in seen:
                continue
            seen.add(row["event_id"])
            by_node.setdefault(node, []).append(row)
        for node, members in by_node.items():
            self.add("events", node, rows_to_table(members, EVENTS))

    def flush(self, kind: PartKind, node: int) -> None:
        key = (kind, node)
        tables = self.buffers.pop(key, [])
        self.buffered.pop(key, None)
        if not tables:
            return
        while len(self.in_flight) >= 2:
            self._collect(self.in_flight.popleft())
        sequence = self.sequence[key]
        self.sequence[key] += 1
        name = layout.part_key(kind, self.cast.ref, self.cast.nodes[node].pod, f"{self.spool_ids[node]}-{sequence:08d}")
        self.in_flight.append(self.executor.submit(self._write, kind, node, name, tables))

    def _write(self, kind: PartKind, node: int, key: str, tables: list[pa.Table]) -> tuple[PartKind, int, int, int]:
        table = _sorted(kind, tables)
        data = table_to_parquet(table)
        put_object(self.storage, key, data, self.cast.ref, kind)
        return kind, node, table.num_rows, len(data)

    def _collect(self, future: Future[tuple[PartKind, int, int, int]]) -> None:
        kind, node, rows, size = future.result()
        stats = self.stats.setdefault((kind, node), PartStats())
        stats.rows += rows
        stats.parts += 1
        stats.bytes += size
        total = self.total(kind)
        self.progress(f"{kind}: part {total.parts} written, {total.rows:,} rows, {total.bytes / 2**20:,.0f} MiB")

    def close(self) -> None:
        for kind, node in list(self.buffers):
            self.flush(kind, node)
        while self.in_flight:
            self._collect(self.in_flight.popleft())
        self.executor.shutdown()

    def total(self, kind: PartKind | None = None) -> PartStats:
        total = PartStats()
        for (found, _), stats in self.stats.items():
            if kind is None or found == kind:
                total.rows += stats.rows
                total.parts += stats.parts
                total.bytes += stats.bytes
        return total

    def node_stats(self, node: int) -> PartStats:
        return self.stats.get(("events", node), PartStats())


def _pod_labels(cast: Cast) -> dict[str, str]:
    """The head pod's labels as KubeRay and Kueue set them (and a team label of the user's)."""
    cluster = cast.ref.cluster
    return {
        "app.kubernetes.io/created-by": "kuberay-operator",
        "app.kubernetes.io/name": "kuberay",
        "ray.io/cluster": cluster,
        "ray.io/group": "headgroup",
        "ray.io/identifier": f"{cluster}-head",
        "ray.io/is-ray-node": "yes",
        "ray.io/node-type": "head",
        "ray.io/originated-from-crd": "RayJob",
        "ray.io/originated-from-cr-name": cast.owner_name,
        "kueue.x-k8s.io/queue-name": "batch",
        "kueue.x-k8s.io/priority-class": "medium-priority",
        "team": cast.ref.namespace,
        "priority": "medium",
    }


def write_session_documents(storage: Storage, cast: Cast, writer: PartWriter, end_ns: int) -> None:
    """The manifest, every node's final marker and closed.json, as a cluster shut down by KubeRay leaves them."""
    ref = cast.ref
    head = cast.head
    labels = _pod_labels(cast)
    manifest = documents.Manifest(
        namespace=ref.namespace,
        cluster=ref.cluster,
        session=ref.session,
        start_time_ms=cast.start_ns // MS,
        ray_version=RAY_VERSION,
        head_node=head.pod,
        head_ray_node_id=head.hex,
        owner=documents.Owner(kind="RayJob", name=cast.owner_name),
        labels=labels,
        kubernetes=documents.Kubernetes(
            pod=head.pod,
            raycluster=ref.cluster,
            rayjob=cast.owner_name,
            queue=labels["kueue.x-k8s.io/queue-name"],
            priority_class=labels["kueue.x-k8s.io/priority-class"],
            pod_labels=labels,
            pod_annotations={"ray.io/ft-enabled": "false", "kueue.x-k8s.io/workload": f"rayjob-{cast.owner_name}"},
        ),
        collector_version=COLLECTOR_VERSION,
    )
    put_object(storage, layout.manifest_key(ref), documents.encode(manifest), ref, "sessions")
    for node in cast.nodes:
        stats = writer.node_stats(node.index)
        marker = documents.NodeMarker(
            node=node.pod,
            role="head" if node.is_head else "worker",
            final=True,
            last_heartbeat_ms=(node.leave_ns or end_ns) // MS,
            started_at_ms=node.join_ns // MS - 5000,
            ray_node_id=node.hex,
            hostname=node.pod,
            events_uploaded=stats.rows,
            parts_uploaded=stats.parts,
        )
        put_object(storage, layout.node_marker_key(ref, node.pod), documents.encode(marker), ref, "sessions")
    closed = documents.Closed(
        closed_at_ms=end_ns // MS + 2000,
        closed_by=head.pod,
        reason="the collector was stopped (the cluster is shutting down)",
    )
    put_object(storage, layout.closed_key(ref), documents.encode(closed), ref, "sessions")
    journal(storage, ref)


# --- one session ----------------------------------------------------------------------------------


@dataclass
class SessionStats:
    ref: SessionRef
    tasks: int
    attempts: int
    nodes: int
    events: PartStats
    logs: PartStats
    metrics: PartStats
    seconds: float
    event_types: dict[str, int]
    final_states: dict[str, int]
    start_ms: int
    end_ms: int


def _quiet(_: str) -> None:
    return None


def write_session(
    storage: Storage,
    ref: SessionRef,
    tasks: int,
    seed: int,
    *,
    nodes: int | None = None,
    start_ms: int | None = None,
    duration_s: float | None = None,
    rows_per_part: int = ROWS_PER_PART,
    logs: bool = False,
    metrics: bool = False,
    fixtures: Path = FIXTURES,
    progress: Callable[[str], None] = _quiet,
) -> SessionStats:
    """One session's raw archive as the collectors of its nodes leave it: event parts under every node
    (logs and metrics parts if asked), the manifest, a final marker per node and closed.json.

    `tasks` tasks arrive over `duration_s` (default: a million an hour, at least 2 minutes) from the
    RayJob's driver, a second submission and a notebook, on `nodes` nodes (default: as many as the
    load needs). The same arguments give the same archive."""
    started = time.perf_counter()
    cast = plan_session(ref, tasks, seed, nodes, start_ms, duration_s)
    prototypes = Prototypes(fixtures)
    simulation = Simulation(cast)
    renderer = AttemptRenderer(cast, prototypes, simulation.workers)
    cluster = ClusterEvents(cast, prototypes, simulation.workers)
    jobs = JobEvents(cast, prototypes, simulation.workers)
    writer = PartWriter(storage, cast, rows_per_part, progress)
    worker_logs = WorkerLogs(cast, simulation.workers, writer) if logs else None
    if worker_logs is not None:
        renderer.log_sink = worker_logs.record
    writer.add_rows(cluster.nodes())
    attempts, last_end = _write_tasks(tasks, simulation, renderer, cluster, jobs, writer, progress)
    job_ends = _settle_ends(cast, simulation.workers, last_end)
    end_ns = max(job_ends.values()) + 15 * SECOND  # KubeRay deletes the cluster once the RayJob is done
    _write_endings(cluster, jobs, writer, job_ends, end_ns)
    if worker_logs is not None:
        worker_logs.ship()
        worker_logs.driver_logs(job_ends)
    if metrics:
        samples = NodeMetrics(cast, fixtures)
        for node in cast.nodes:
            for table in samples.tables(node, end_ns, rows_per_part):
                writer.add("metrics", node.index, table)
    writer.close()
    write_session_documents(storage, cast, writer, end_ns)
    return SessionStats(
        ref=ref,
        tasks=tasks,
        attempts=attempts,
        nodes=len(cast.nodes),
        events=writer.total("events"),
        logs=writer.total("logs"),
        metrics=writer.total("metrics"),
        seconds=time.perf_counter() - started,
        event_types=dict(writer.event_types),
        final_states=simulation.final_states(),
        start_ms=cast.start_ns // MS,
        end_ms=end_ns // MS,
    )


def _write_tasks(
    tasks: int,
    simulation: Simulation,
    renderer: AttemptRenderer,
    cluster: ClusterEvents,
    jobs: JobEvents,
    writer: PartWriter,
    progress: Callable[[str], None],
) -> tuple[int, np.ndarray]:
    """Simulate and write the tasks a chunk at a time; (attempts, each job's last task end)."""
    last_end = np.zeros(len(simulation.cast.jobs), np.int64)
    attempts = 0
    for done in range(0, tasks, CHUNK_TASKS):
        batch = simulation.chunk(min(CHUNK_TASKS, tasks - done))
        attempts += len(batch)
        for node, table in renderer.render(batch):
            writer.add("events", node, table)
        writer.add_rows(cluster.workers_changed())
        writer.add_rows(jobs.driver_profiles(batch))
        np.maximum.at(last_end, batch.job, batch.t_end)
        progress(f"tasks: {min(done + CHUNK_TASKS, tasks):,}/{tasks:,} simulated")
    return attempts, last_end


def _write_endings(
    cluster: ClusterEvents, jobs: JobEvents, writer: PartWriter, job_ends: Mapping[int, int], end_ns: int
) -> None:
    """What is known once the tasks are done: workers and actors that ended, the actors' and drivers'
    lives, the jobs' status, the collector's dashboard polls."""
    for rows in (
        cluster.workers_changed(),
        cluster.actors(),
        jobs.drivers(job_ends),
        jobs.submissions(job_ends),
        jobs.dashboard_jobs(job_ends, end_ns),
        jobs.dashboard_placement_groups(end_ns),
    ):
        writer.add_rows(rows)


def _settle_ends(cast: Cast, workers: Workers, last_end: np.ndarray) -> dict[int, int]:
    """When each job ended (its last task, or its plan), and what ended with it: its actors, the
    workers it claimed, its placement groups."""
    job_ends: dict[int, int] = {}
    for index, job in enumerate(cast.jobs):
        if job.group in ("internal", "failed"):
            continue
        job_ends[index] = max(int(last_end[index]), job.start_ns + 5 * SECOND) + 2 * SECOND
    for actor in cast.actors:
        if actor.death_ns is not None or actor.death == "none":
            continue  # planned (a crash, a ray.kill) or detached: alive until the cluster goes
        job = actor.supervises if actor.supervises is not None else actor.job
        actor.death_ns = job_ends.get(job, cast.jobs[job].end_ns) + 2 * SECOND
    for actor in cast.actors:
        if actor.death_ns is not None:
            exit_type = "SYSTEM_ERROR" if actor.death == "crash" else "INTENDED_USER_EXIT"
            workers.end(actor.proc, actor.death_ns, exit_type, _ACTOR_EXITS[actor.death])
    for index, proc in enumerate(workers.procs):
        if proc.end_ns is None and proc.job in job_ends and all(a.proc != index for a in cast.actors):
            workers.end(
                index,
                job_ends[proc.job] + SECOND,
                "INTENDED_SYSTEM_EXIT",
                "Worker exits because the job it was running for has finished.",
            )
    for group in cast.placement_groups.values():
        group.removed_ns = job_ends.get(group.job, group.removed_ns) - SECOND
    return job_ends


_ACTOR_EXITS = {
    "owner": "Worker exits because the actor's owner has died.",
    "kill": "Worker exits because the actor is killed by `ray.kill`.",
    "crash": _WORKER_DEATHS[0][1],
    "exit": "Worker exits by an user request. Worker exits with an exit code 0. exit_actor() is called.",
}


# --- logs and metrics (--logs, --metrics) ------------------------------------------------------------


@dataclass
class _LogFile:
    name: str  # relative to the session folder, as the collector names it
    node: int
    file_id: str
    offset: int = 0
    line: int = 0
    pending: list[str] = field(default_factory=list)
    pending_bytes: int = 0
    attribution: Attribution = field(default_factory=lambda: Attribution())


class WorkerLogs:
    """The workers' .out/.err files byte for byte as the task log offsets describe them (Ray's
    `:job_id:` line, then per task its `:task_name:` line and what it printed), shipped as the
    collector ships them (archive.logs), plus each submission's job-driver log."""

    def __init__(self, cast: Cast, workers: Workers, writer: PartWriter) -> None:
        self.cast = cast
        self.workers = workers
        self.writer = writer
        self.rng = np.random.default_rng([cast.seed, 5])
        names = [task_name(f) for f in cast.functions]
        self.markers = [f":task_name:{name}\n" for name in names]
        self.lines = [_print_line(name) for name in names]
        self.files: dict[tuple[int, str], _LogFile] = {}
        self.pending = 0
        self.last_read = cast.start_ns

    def record(self, batch: Attempts, rows: np.ndarray, out: np.ndarray, err: np.ndarray) -> None:
        order = np.lexsort((batch.t_run[rows], batch.proc[rows]))
        for i, stdout, stderr in zip(rows[order].tolist(), out[order].tolist(), err[order].tolist(), strict=True):
            func = int(batch.func[i])
            proc = int(batch.proc[i])
            marker = self.markers[func]
            self._append(proc, "out", marker + self.lines[func] * (stdout // len(self.lines[func])))
            self._append(proc, "err", marker + (WARNING_LINE if stderr else ""))
        self.last_read = int(batch.t_end.max()) + 5 * SECOND
        if self.pending > 32 * 2**20:
            self.ship()

    def _append(self, proc: int, stream: str, text: str) -> None:
        entry = self.files.get((proc, stream))
        if entry is None:
            worker = self.workers.procs[proc]
            name = f"logs/worker-{worker.hex}-{worker.file_job}-{worker.pid}.{stream}"
            entry = self.files[proc, stream] = _LogFile(name, worker.node, self.rng.bytes(8).hex())
            text = f":job_id:{self.cast.jobs[worker.job].hex}\n" + text
        entry.pending.append(text)
        entry.pending_bytes += len(text)
        self.pending += len(text)

    def ship(self) -> None:
        """Everything written since the last call, read by the collector a few seconds later."""
        for entry in self.files.values():
            if entry.pending:
                self._ship_file(entry, "".join(entry.pending).encode(), self.last_read)
                entry.pending.clear()
                entry.pending_bytes = 0
        self.pending = 0

    def _ship_file(self, entry: _LogFile, data: bytes, read_at: int) -> None:
        node = self.cast.nodes[entry.node]
        chunk = FileChunk(node.pod, node.hex, entry.name, entry.file_id, entry.offset, entry.line, data, read_at)
        table, entry.line = chunk_rows(chunk, identify(entry.name), entry.attribution)
        entry.offset += len(data)
        self.writer.add("logs", entry.node, table)

    def driver_logs(self, job_ends: Mapping[int, int]) -> None:
        """job-driver-<submission>.log on the head: the entrypoint's output, a progress line a minute."""
        for index, job in enumerate(self.cast.jobs):
            if job.submission_id is None or not job.driver:
                continue
            end = job_ends.get(index, job.end_ns)
            lines = [f"Running entrypoint for job {job.submission_id}: {job.entrypoint}"]
            for at in range(job.start_ns, end, 60 * SECOND):
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at // SECOND))
                lines.append(
                    f"{stamp},{at // MS % 1000:03d}\tINFO {job.module}.py:{57 + len(lines) % 40} -- "
                    f"progress: {len(lines) * 1871} items processed"
                )
            lines.append(f"Job {job.submission_id} finished.")
            entry = _LogFile(f"logs/job-driver-{job.submission_id}.log", 0, self.rng.bytes(8).hex())
            self._ship_file(entry, ("\n".join(lines) + "\n").encode(), end + 5 * SECOND)


class NodeMetrics:
    """A node's Prometheus samples every 15 s: the fixture's real scrape, renamed for the node, with
    counters growing and gauges moving, as rows of METRICS (collector.scrape)."""

    INTERVAL = 15 * SECOND

    def __init__(self, cast: Cast, fixtures: Path) -> None:
        self.cast = cast
        self.text = capture_text(fixtures / "metrics" / "run1_scrape_8080_trimmed.txt")
        self.rng = np.random.default_rng([cast.seed, 6])

    def tables(self, node: NodeSpec, end_ns: int, rows_per_table: int) -> Iterator[pa.Table]:
        text = self.text.replace(_FIXTURE_SESSION, self.cast.session).replace(_FIXTURE_IP, node.ip)
        text = text.replace(_FIXTURE_NODE_ID, node.hex)
        if not node.is_head:
            text = text.replace('IsHeadNode="true"', 'IsHeadNode="false"').replace(
                'RayNodeType="head"', 'RayNodeType="worker"'
            )
        target = "127.0.0.1:8080"
        samples = sample_rows(text, node.pod, target, node.hex, 0)
        names = pa.array([sample["name"] for sample in samples], pa.string())
        types = pa.array([sample["type"] for sample in samples], pa.string())
        labels = pa.array([sample["labels"] for sample in samples], pa.string())
        base = np.array([sample["value"] for sample in samples])
        growing = np.array([sample["type"] in ("counter", "histogram", "summary") for sample in samples])
        times = np.arange(node.join_ns + 10 * SECOND, node.leave_ns or end_ns, self.INTERVAL, dtype=np.int64)
        per_table = max(1, rows_per_table // max(len(samples), 1))
        span = max(len(times), 1)
        for first in range(0, len(times), per_table):
            stamps = times[first : first + per_table]
            progress = (np.arange(first, first + len(stamps)) + 1) / span
            noise = 1 + 0.1 * self.rng.standard_normal((len(stamps), len(samples)))
            values = np.where(growing[None, :], base[None, :] * (0.05 + progress[:, None] * 20), base[None, :] * noise)
            count = values.size
            index = pa.array(np.tile(np.arange(len(samples)), len(stamps)))
            yield pa.Table.from_arrays(
                [
                    pa.array(np.repeat(stamps, len(samples)), pa.timestamp("ns", tz="UTC")),
                    pa.repeat(pa.scalar(node.pod), count),
                    pa.repeat(pa.scalar(node.hex), count),
                    pa.repeat(pa.scalar(target), count),
                    names.take(index),
                    types.take(index),
                    labels.take(index),
                    pa.array(values.ravel(), pa.float64()),
                ],
                schema=METRICS,
            )


_FIXTURE_SESSION = "session_2026-11-28_19-03-57_108652_5250"
_FIXTURE_IP = "192.0.2.2"
_FIXTURE_NODE_ID = "50dae9eb11ba41e336fa66cb35aa1a3832f70b5b1c80e9d237bec012"


# --- a catalog: many sessions' documents only --------------------------------------------------------

# (namespace = team, the Kueue queue it mostly uses, weight)
TEAMS: tuple[tuple[str, str, int], ...] = (
    ("ml-research", "gpu-a100", 22),
    ("recsys", "batch", 18),
    ("data-platform", "batch", 14),
    ("search-ranking", "gpu-l4", 12),
    ("fraud-detection", "batch", 10),
    ("nlp", "gpu-a100", 8),
    ("vision", "gpu-l4", 7),
    ("ads-ml", "preemptible", 5),
    ("forecasting", "batch", 3),
    ("genai-infra", "gpu-a100", 1),
)
WORKLOADS = (
    "nightly-etl",
    "feature-backfill",
    "train-ranker",
    "eval-ranker",
    "embedding-refresh",
    "hpo-sweep",
    "batch-inference",
    "data-validation",
    "model-distill",
    "ab-analysis",
    "retrain-fraud-model",
    "tokenize-corpus",
    "finetune-llm",
    "index-build",
    "forecast-daily",
)
QUEUES = ("batch", "gpu-a100", "gpu-l4", "preemptible", "interactive")
PRIORITIES = (
    ("high", "high-priority", 15),
    ("medium", "medium-priority", 50),
    ("low", "low-priority", 25),
    ("low", "preemptible", 10),
)
RAY_VERSIONS = (("2.60.0", 55), ("2.59.1", 20), ("2.58.0", 12), ("2.55.1", 8), ("2.52.0", 5))
# Weights per pick: a RayCluster pick brings about five sessions, so sessions split 78/15/7.
OWNER_KINDS = (("RayJob", 78), ("RayCluster", 3), ("RayService", 7))
DAY_NS = 86_400 * SECOND
CLOSED_REASON = "the collector was stopped (the cluster is shutting down)"
# How long before now a session's collectors went silent: an incomplete one is clearly not running.
_SILENT_NS = {"closed": 60 * SECOND, "incomplete": 2 * 3600 * SECOND}
RESTARTED_REASON = "Ray restarted with a new session"


@dataclass
class CatalogStats:
    sessions: int
    status: dict[str, int]  # closed, incomplete, running
    owner_kinds: dict[str, int]
    namespaces: int
    clusters: int
    ray_versions: dict[str, int]
    documents: int
    bytes: int
    seconds: float


@dataclass
class _CatalogSession:
    ref: SessionRef
    owner_kind: str
    owner_name: str | None
    team: str
    start_ns: int
    end_ns: int
    status: str  # closed, incomplete, running
    restarted: bool = False  # closed because Ray restarted (the cluster lived on)


class _Draws:
    """Scalar random draws for the catalog: Python's generator is 100x faster than numpy's per call."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def pick(self, weighted: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
        return self.random.choices(weighted, weights=[item[-1] for item in weighted])[0]

    def suffix(self, size: int = 5) -> str:
        return "".join(self.random.choices(SUFFIX_ALPHABET, k=size))

    def hex(self, size: int) -> str:
        return self.random.randbytes(size).hex()

    def daytime(self, now_ns: int, days: float = 30) -> int:
        """A start in the last `days`, mostly in working hours and on weekdays (nightly jobs aside)."""
        while True:
            at = now_ns - int(self.random.uniform(0, days) * DAY_NS)
            hour = at // (3600 * SECOND) % 24
            weekday = (at // DAY_NS + 3) % 7  # 1970-01-01 was a Thursday
            if self.random.random() < (1.0 if 7 <= hour <= 19 else 0.35) * (1.0 if weekday < 5 else 0.3):
                return at


def _plan_catalog(draws: _Draws, sessions: int, now_ns: int) -> list[_CatalogSession]:
    """Sessions of RayJobs (a cluster each), of long-lived RayClusters (restarted now and then:
    several sessions in a row) and of RayServices; most closed, some incomplete, a few running."""
    planned: list[_CatalogSession] = []
    while len(planned) < sessions:
        kind = draws.pick(OWNER_KINDS)[0]
        team = draws.pick(TEAMS)[0]
        if kind == "RayCluster":
            planned.extend(_long_lived_sessions(draws, team, now_ns, sessions - len(planned)))
            continue
        start = draws.daytime(now_ns)
        if kind == "RayJob":
            workload = draws.random.choice(WORKLOADS)
            owner = f"{workload}-{time.strftime('%Y%m%d', time.gmtime(start // SECOND))}-{draws.suffix(4)}"
            cluster = f"{owner}-{draws.suffix()}"
            duration = min(int(draws.random.lognormvariate(math.log(25 * 60), 1.1) * SECOND), 2 * DAY_NS)
        else:
            owner = f"{team}-serve"
            cluster = f"{owner}-raycluster-{draws.suffix()}"
            duration = int(draws.random.uniform(0.5, 6) * DAY_NS)
        status = draws.pick((("running", 3), ("incomplete", 7), ("closed", 90)))[0]
        if status == "running":
            start = now_ns - int(draws.random.uniform(5 * 60, 6 * 3600) * SECOND)
        elif status == "incomplete":
            start = min(start, now_ns - _SILENT_NS[status] - duration)
        end = now_ns if status == "running" else min(start + duration, now_ns - _SILENT_NS[status])
        ref = SessionRef(team, cluster, session_name(start // MS, draws.random))
        planned.append(_CatalogSession(ref, kind, owner, team, start, max(end, start + SECOND), status))
    return planned[:sessions]


def _long_lived_sessions(draws: _Draws, team: str, now_ns: int, most: int) -> list[_CatalogSession]:
    """A RayCluster people share: a session per Ray restart, one after the other; the last may still run."""
    cluster = f"{team}-{draws.random.choice(('dev', 'notebook', 'shared'))}-{draws.random.randrange(1, 9)}"
    count = min(most, draws.random.randrange(2, 9))
    at = now_ns - int(draws.random.uniform(3, 30) * DAY_NS)
    found = []
    for index in range(count):
        start = at + int(draws.random.uniform(60, 4 * 3600) * SECOND)
        end = min(start + int(draws.random.lognormvariate(math.log(8 * 3600), 0.8) * SECOND), now_ns - 60 * SECOND)
        if start >= end:
            break
        last = index == count - 1
        status = (
            "running"
            if last and draws.random.random() < 0.3
            else "incomplete"
            if draws.random.random() < 0.05
            else "closed"
        )
        if status == "incomplete" and end > now_ns - _SILENT_NS["incomplete"]:
            status = "closed"  # too recent to look abandoned
        ref = SessionRef(team, cluster, session_name(start // MS, draws.random))
        found.append(
            _CatalogSession(
                ref,
                "RayCluster",
                cluster,
                team,
                start,
                now_ns if status == "running" else end,
                status,
                restarted=not last,
            )
        )
        at = end
    return found


def _catalog_labels(
    draws: _Draws, planned: _CatalogSession, queue: str | None, priority: str, priority_class: str
) -> dict[str, str]:
    """The head pod's labels: KubeRay's, Kueue's when the cluster is queued, and the team's own."""
    cluster = planned.ref.cluster
    labels = {
        "app.kubernetes.io/created-by": "kuberay-operator",
        "app.kubernetes.io/name": "kuberay",
        "ray.io/cluster": cluster,
        "ray.io/group": "headgroup",
        "ray.io/identifier": f"{cluster}-head",
        "ray.io/is-ray-node": "yes",
        "ray.io/node-type": "head",
        "team": planned.team,
        "priority": priority,
    }
    if planned.owner_kind != "RayCluster":
        labels["ray.io/originated-from-crd"] = planned.owner_kind
        labels["ray.io/originated-from-cr-name"] = str(planned.owner_name)
    if queue is not None:
        labels["kueue.x-k8s.io/queue-name"] = queue
        labels["kueue.x-k8s.io/priority-class"] = priority_class
    if draws.random.random() < 0.4:
        labels["cost-center"] = f"cc-{1000 + draws.random.randrange(40)}"
    return labels


def _catalog_documents(
    draws: _Draws, planned: _CatalogSession, now_ns: int
) -> tuple[documents.Manifest, list[tuple[str, bytes]]]:
    """The manifest, and (key, bytes) of it, the node markers and (if closed) closed.json."""
    ref = planned.ref
    queue: str | None = next(default for name, default, _ in TEAMS if name == planned.team)
    if draws.random.random() < 0.3:
        queue = draws.random.choice(QUEUES)
    if planned.owner_kind == "RayCluster" and draws.random.random() < 0.6:
        queue = None  # a shared dev cluster that Kueue does not admit
    priority, priority_class, _ = draws.pick(PRIORITIES)
    labels = _catalog_labels(draws, planned, queue, priority, priority_class)
    workers = draws.pick(((0, 20), (1, 30), (2, 30), (3, 20)))[0]
    group = "gpu-group" if queue and "gpu" in queue else "cpu-group"
    pods = [f"{ref.cluster}-head-{draws.suffix()}"] + [
        f"{ref.cluster}-{group}-worker-{draws.suffix()}" for _ in range(workers)
    ]
    manifest = documents.Manifest(
        namespace=ref.namespace,
        cluster=ref.cluster,
        session=ref.session,
        start_time_ms=planned.start_ns // MS,
        ray_version=str(draws.pick(RAY_VERSIONS)[0]),
        head_node=pods[0],
        head_ray_node_id=draws.hex(28),
        owner=documents.Owner(kind=planned.owner_kind, name=planned.owner_name),
        labels=labels,
        kubernetes=documents.Kubernetes(
            pod=pods[0],
            raycluster=ref.cluster,
            rayjob=planned.owner_name if planned.owner_kind == "RayJob" else None,
            queue=queue,
            priority_class=priority_class if queue else None,
            pod_labels=labels,
            pod_annotations={"ray.io/ft-enabled": "false"},
        ),
        collector_version=COLLECTOR_VERSION,
    )
    found = [(layout.manifest_key(ref), documents.encode(manifest))]
    events = int(draws.random.lognormvariate(math.log(150_000), 1.5))
    for index, pod in enumerate(pods):
        running = planned.status == "running"
        heartbeat = now_ns - int(draws.random.uniform(0, 30) * SECOND) if running else planned.end_ns
        share = events // 2 if index == 0 else events // (2 * workers)
        marker = documents.NodeMarker(
            node=pod,
            role="head" if index == 0 else "worker",
            last_heartbeat_ms=heartbeat // MS,
            started_at_ms=(planned.start_ns + index * draws.random.randrange(5, 60) * SECOND) // MS,
            final=planned.status == "closed",
            ray_node_id=draws.hex(28),
            hostname=pod,
            events_uploaded=share,
            parts_uploaded=1 + share // 60_000,
        )
        found.append((layout.node_marker_key(ref, pod), documents.encode(marker)))
    if planned.status == "closed":
        closed = documents.Closed(
            closed_at_ms=planned.end_ns // MS + 2000,
            closed_by=pods[0],
            reason=RESTARTED_REASON if planned.restarted else CLOSED_REASON,
        )
        found.append((layout.closed_key(ref), documents.encode(closed)))
    return manifest, found


def _put_session(storage: Storage, ref: SessionRef, items: list[tuple[str, bytes]]) -> None:
    if isinstance(storage, LocalStorage):
        # Its folders made once, not per document: a mkdir costs over a millisecond on some disks.
        (storage.root / layout.session_prefix(ref) / "nodes").mkdir(parents=True, exist_ok=True)
    for key, data in items:
        put_object(storage, key, data, ref, "sessions")
    journal(storage, ref)  # one marker for the session's documents, as its last writer's would be


def write_catalog(
    storage: Storage, sessions: int, seed: int, *, now_ms: int | None = None, progress: Callable[[str], None] = _quiet
) -> CatalogStats:
    """`sessions` sessions' documents (no parts), as a catalog of teams' RayJobs, shared RayClusters
    and RayServices over the last 30 days: about 90% closed, 7% incomplete (no closed.json, an old
    heartbeat: the collector died), 3% running (a heartbeat in the last 30 s)."""
    started = time.perf_counter()
    now_ns = (now_ms if now_ms is not None else time.time_ns() // MS) * MS
    draws = _Draws(seed)
    planned = _plan_catalog(draws, sessions, now_ns)
    written = 0
    size = 0
    versions: Counter[str] = Counter()
    # Creating small files is latency, not work (a millisecond each on this VM's disk; an object
    # store's put takes longer): keep many in flight.
    with ThreadPoolExecutor(max_workers=16) as pool:
        pending: deque[Future[None]] = deque()
        for index, entry in enumerate(planned):
            manifest, items = _catalog_documents(draws, entry, now_ns)
            versions[str(manifest.ray_version)] += 1
            written += len(items)
            size += sum(len(data) for _, data in items)
            pending.append(pool.submit(_put_session, storage, entry.ref, items))
            while len(pending) > 256:
                pending.popleft().result()
            if (index + 1) % 2000 == 0:
                progress(f"catalog: {index + 1:,}/{sessions:,} sessions, {time.perf_counter() - started:.1f} s")
        for future in pending:
            future.result()
    return CatalogStats(
        sessions=len(planned),
        status=dict(Counter(entry.status for entry in planned)),
        owner_kinds=dict(Counter(entry.owner_kind for entry in planned)),
        namespaces=len({entry.ref.namespace for entry in planned}),
        clusters=len({(entry.ref.namespace, entry.ref.cluster) for entry in planned}),
        ray_versions=dict(versions),
        documents=written,
        bytes=size,
        seconds=time.perf_counter() - started,
    )


# --- command line -------------------------------------------------------------------------------------


def _count_label(count: int) -> str:
    for size, suffix in ((1_000_000, "m"), (1_000, "k")):
        if count >= size and count % size == 0:
            return f"{count // size}{suffix}"
    return str(count)


def _session_table(stats: SessionStats) -> list[tuple[str, str]]:
    rows = stats.events.rows
    failed = sum(count for state, count in stats.final_states.items() if state != "FINISHED")
    table = [
        ("session", f"{stats.ref.path} ({stats.nodes} nodes)"),
        ("tasks / attempts", f"{stats.tasks:,} / {stats.attempts:,}"),
        (
            "tasks FAILED",
            f"{failed:,} ({failed / max(stats.tasks, 1):.2%}): "
            + ", ".join(f"{k} {v:,}" for k, v in stats.final_states.items() if k != "FINISHED"),
        ),
        ("span", f"{(stats.end_ms - stats.start_ms) / 60000:,.1f} min"),
        ("event rows", f"{rows:,} ({rows / max(stats.attempts, 1):.2f} per attempt)"),
        ("event parts", f"{stats.events.parts} ({rows // max(stats.events.parts, 1):,} rows each on average)"),
        ("events size", f"{stats.events.bytes / 2**20:,.1f} MiB ({stats.events.bytes / max(rows, 1):.0f} B/row)"),
    ]
    for name, part in (("log", stats.logs), ("metric", stats.metrics)):
        if part.rows:
            size = f"{part.rows:,} / {part.parts} / {part.bytes / 2**20:,.1f} MiB"
            table.append((f"{name} rows / parts / size", size))
    table.append(("time", f"{stats.seconds:,.1f} s ({rows / stats.seconds:,.0f} rows/s)"))
    return table


def _catalog_table(stats: CatalogStats) -> list[tuple[str, str]]:
    return [
        ("sessions", f"{stats.sessions:,} in {stats.namespaces} namespaces, {stats.clusters:,} clusters"),
        ("status", ", ".join(f"{k} {v:,}" for k, v in sorted(stats.status.items()))),
        ("owners", ", ".join(f"{k} {v:,}" for k, v in sorted(stats.owner_kinds.items()))),
        ("Ray versions", ", ".join(f"{k} {v:,}" for k, v in sorted(stats.ray_versions.items(), reverse=True))),
        ("documents", f"{stats.documents:,} ({stats.bytes / 2**20:,.1f} MiB)"),
        ("time", f"{stats.seconds:,.1f} s ({stats.sessions / stats.seconds:,.0f} sessions/s)"),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.archive_synth", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="the archive: a folder, file:///path or s3://bucket/prefix")
    parser.add_argument("--tasks", type=int, default=1_000_000, help="tasks of the one full session (0: none)")
    parser.add_argument("--sessions", type=int, default=10_000, help="catalog sessions, documents only (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nodes", type=int, default=None, help="nodes of the full session (default: as needed)")
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds over which its tasks arrive (default: a million an hour, at least 120)",
    )
    parser.add_argument("--rows-per-part", type=int, default=ROWS_PER_PART)
    parser.add_argument("--logs", action="store_true", help="also the workers' log files, as LOGS parts")
    parser.add_argument("--metrics", action="store_true", help="also every node's metrics, as METRICS parts")
    parser.add_argument("--namespace", default="bench", help="namespace of the full session")
    args = parser.parse_args(argv)
    storage = open_storage(args.out)
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {message}", file=sys.stderr, flush=True)

    if args.tasks:
        rng = np.random.default_rng([args.seed, 8])
        window_s = args.duration if args.duration is not None else max(120.0, args.tasks * 3600 / TASKS_PER_HOUR)
        start_ms = time.time_ns() // MS - int((window_s + 600) * 1000)
        cluster = f"synth-{_count_label(args.tasks)}-{_rand_suffix(rng)}"
        ref = SessionRef(args.namespace, cluster, session_name(start_ms, random.Random(args.seed)))
        progress(f"writing session {ref.path} to {storage.uri}")
        stats = write_session(
            storage,
            ref,
            args.tasks,
            args.seed,
            nodes=args.nodes,
            start_ms=start_ms,
            duration_s=args.duration,
            rows_per_part=args.rows_per_part,
            logs=args.logs,
            metrics=args.metrics,
            progress=progress,
        )
        print_table(f"session: {args.tasks:,} tasks", _session_table(stats))
    if args.sessions:
        progress(f"writing {args.sessions:,} catalog sessions to {storage.uri}")
        catalog = write_catalog(storage, args.sessions, args.seed, progress=progress)
        print_table(f"catalog: {args.sessions:,} sessions", _catalog_table(catalog))


if __name__ == "__main__":
    main()
