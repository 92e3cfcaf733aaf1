"""Sessions for the retention tests: documents and real Parquet parts as the collector and the server
leave them, with the times a listing shows set where the store lets us (a local folder: file times)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from archive import documents, layout
from archive.events import ray_event_to_row
from archive.parquet import rows_to_table, table_to_parquet
from archive.schema import EVENTS, LOGS, METRICS, SNAPSHOT_SCHEMA_VERSION, SNAPSHOT_TABLES
from archive.storage import ObjectInfo, Storage
from archive.storage.local import LocalStorage

from .conftest import fixture_posts

DAY_MS = 86_400_000
MS = 1_000_000
_EVENTS = [event for post in fixture_posts()[:3] for event in post][:20]


@dataclass
class Spec:
    """One session to write. `ended_days` None: running (a fresh heartbeat, no closed.json)."""

    path: str
    ended_days: float | None = 10.0
    closed: bool = True
    kinds: Sequence[str] = ("events", "logs", "metrics")
    nodes: int = 1
    snapshot: bool = False
    failed: bool | None = None  # the snapshot's jobs: a FAILED job, none failed, or no jobs table
    stale_snapshot: bool = False  # the snapshot was written before the session's end
    labels: dict[str, str] = field(default_factory=dict)
    owner: tuple[str, str] | None = None
    queue: str | None = None
    rows: int = 5  # rows per part: what makes sizes differ

    @property
    def ref(self) -> layout.SessionRef:
        return layout.SessionRef(*self.path.split("/"))


def _put(storage: Storage, key: str, data: bytes, ref: layout.SessionRef, kind: str) -> None:
    storage.put(key, data, tags=layout.object_tags(kind, ref))


def _part(kind: str, node: str, rows: int) -> bytes:
    if kind == "events":
        table = rows_to_table([ray_event_to_row(event) for event in _EVENTS[:rows]], EVENTS)
    elif kind == "logs":
        table = rows_to_table(
            [{"node": node, "file": "logs/raylet.out", "file_id": "0123456789abcdef", "offset": i * 20,
              "line_number": i + 1, "text": f"line {i} of the raylet", "newline": True, "read_at": i * MS}
             for i in range(rows)], LOGS)  # fmt: skip
    else:
        table = rows_to_table(
            [{"timestamp": i * MS, "node": node, "target": "127.0.0.1:8080", "name": "ray_tasks", "type": "gauge",
              "labels": '{"State":"RUNNING"}', "value": float(i)} for i in range(rows)], METRICS)  # fmt: skip
    return table_to_parquet(table)


def write(storage: Storage, spec: Spec, now_ms: int | None = None) -> layout.SessionRef:
    """Write the session; on a local folder, date its objects as if it ended `ended_days` before `now_ms`."""
    ref = spec.ref
    now_ms = now_ms if now_ms is not None else time.time_ns() // MS
    end_ms = now_ms - int(spec.ended_days * DAY_MS) if spec.ended_days is not None else now_ms
    nodes = [f"{ref.cluster}-head"] + [f"{ref.cluster}-worker-{i}" for i in range(1, spec.nodes)]
    owner = documents.Owner(*spec.owner) if spec.owner else documents.Owner()
    manifest = documents.Manifest(namespace=ref.namespace, cluster=ref.cluster, session=ref.session,
                                  start_time_ms=end_ms - 3_600_000, labels=spec.labels, owner=owner,
                                  kubernetes=documents.Kubernetes(queue=spec.queue, pod=nodes[0]))  # fmt: skip
    _put(storage, layout.manifest_key(ref), documents.encode(manifest), ref, "sessions")
    running = spec.ended_days is None
    for index, node in enumerate(nodes):
        marker = documents.NodeMarker(node=node, role="head" if index == 0 else "worker", last_heartbeat_ms=end_ms,
                                      started_at_ms=end_ms - 3_600_000, final=not running)  # fmt: skip
        _put(storage, layout.node_marker_key(ref, node), documents.encode(marker), ref, "sessions")
        for kind in spec.kinds:
            if kind != "snapshots":
                key = layout.part_key(kind, ref, node, f"{end_ms - 3_600_000:013d}-00000001")  # type: ignore[arg-type]
                _put(storage, key, _part(kind, node, spec.rows), ref, kind)
    if spec.closed and not running:
        closed = documents.Closed(closed_at_ms=end_ms, closed_by=nodes[0], reason="the collector was stopped")
        _put(storage, layout.closed_key(ref), documents.encode(closed), ref, "sessions")
    if spec.snapshot:
        write_snapshot(storage, ref, spec.failed, end_ms)
    if isinstance(storage, LocalStorage) and not running:
        date(storage, ref, end_ms, snapshot_ms=end_ms - 60_000 if spec.stale_snapshot else end_ms + 60_000)
    return ref


def write_snapshot(storage: Storage, ref: layout.SessionRef, failed: bool | None, end_ms: int) -> None:
    """The tables a server writes back for a closed session, the `jobs` one with a job of each outcome asked."""
    tables = {"tasks": SNAPSHOT_TABLES["tasks"].empty_table()}
    if failed is not None:
        jobs = [{"job_id": "01000000", "type": "SUBMISSION", "status": "SUCCEEDED", "is_hidden": False},
                {"job_id": "02000000", "type": "DRIVER", "status": "FAILED", "is_hidden": True}]  # fmt: skip
        if failed:
            jobs.append({"job_id": "03000000", "type": "SUBMISSION", "status": "FAILED", "is_hidden": False})
        tables["jobs"] = rows_to_table(jobs, SNAPSHOT_TABLES["jobs"])
    for name, table in tables.items():
        _put(storage, layout.snapshot_key(ref, name), table_to_parquet(table), ref, "snapshots")
    manifest = documents.SnapshotManifest(schema_version=SNAPSHOT_SCHEMA_VERSION, parts="1:1:1", closed=True,
                                          end_ns=end_ms * MS, built_at_ms=end_ms,
                                          tables={name: t.num_rows for name, t in tables.items()})  # fmt: skip
    _put(storage, layout.snapshot_manifest_key(ref), documents.encode(manifest), ref, "snapshots")


def date(storage: LocalStorage, ref: layout.SessionRef, end_ms: int, snapshot_ms: int | None = None) -> None:
    """Set the file times a listing shows: what the collectors wrote at the end, the snapshot after it."""
    for kind in ("sessions", "events", "logs", "metrics", "snapshots"):
        for info in storage.list(f"{kind}/{ref.path}/"):
            at = (snapshot_ms or end_ms) if kind == "snapshots" else end_ms
            if info.key.endswith("/retention.json"):
                continue
            os.utime(storage.root / info.key, ns=(at * MS, at * MS))


def keys(storage: Storage) -> set[str]:
    return {info.key for kind in ("sessions", "events", "logs", "metrics", "snapshots") for info in
            storage.list(f"{kind}/")}  # fmt: skip


def keys_of(storage: Storage, refs: Iterable[layout.SessionRef], kinds: Sequence[str] = ("sessions", "events", "logs",
            "metrics", "snapshots")) -> set[str]:  # fmt: skip
    return {info.key for ref in refs for kind in kinds for info in storage.list(f"{kind}/{ref.path}/")}


class Crash(Exception):
    """Stands for the process dying: nothing after it runs."""


class CrashingStorage:
    """The archive, until the n-th call of one kind: then the process 'dies'."""

    def __init__(self, inner: Storage, call: str, after: int) -> None:
        self.inner, self.call, self.after = inner, call, after
        self.uri, self.supports_tags = inner.uri, inner.supports_tags
        self.count = 0
        self.lock = threading.Lock()

    def _tick(self, call: str) -> None:
        if call != self.call:
            return
        with self.lock:
            self.count += 1
            if self.count > self.after:
                raise Crash(f"died at {call} {self.count}")

    def put(self, key: str, data: bytes, tags: Mapping[str, str] | None = None) -> None:
        self._tick("put")
        self.inner.put(key, data, tags)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def list(self, prefix: str = "", start_after: str | None = None) -> list[ObjectInfo]:  # type: ignore[override]
        return list(self.inner.list(prefix, start_after=start_after))

    def delete(self, key: str) -> None:
        self._tick("delete")
        self.inner.delete(key)

    def get_tags(self, key: str) -> dict[str, str]:
        return self.inner.get_tags(key)
