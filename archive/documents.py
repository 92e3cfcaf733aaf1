"""The small JSON documents under sessions/: what the catalog is built from."""

from __future__ import annotations

from typing import TypeVar

import msgspec

from .schema import SCHEMA_VERSION


class Owner(msgspec.Struct, omit_defaults=True):
    kind: str | None = None  # RayJob, RayCluster, RayService...
    name: str | None = None


class Kubernetes(msgspec.Struct, omit_defaults=True):
    """Where the cluster ran in Kubernetes, from the head pod's labels and annotations."""

    pod: str | None = None
    raycluster: str | None = None
    rayjob: str | None = None
    queue: str | None = None  # kueue.x-k8s.io/queue-name
    priority_class: str | None = None
    pod_labels: dict[str, str] = msgspec.field(default_factory=dict)
    pod_annotations: dict[str, str] = msgspec.field(default_factory=dict)


class Manifest(msgspec.Struct, omit_defaults=True):
    """sessions/{ns}/{cluster}/{session}/manifest.json, written by the head's collector."""

    namespace: str
    cluster: str
    session: str
    start_time_ms: int
    ray_version: str | None = None
    head_node: str | None = None
    head_ray_node_id: str | None = None
    owner: Owner = msgspec.field(default_factory=Owner)
    labels: dict[str, str] = msgspec.field(default_factory=dict)  # the pod's labels and --label, merged
    kubernetes: Kubernetes = msgspec.field(default_factory=Kubernetes)
    collector_version: str | None = None
    schema_version: int = SCHEMA_VERSION

    def owner_of(self) -> tuple[str | None, str | None]:
        """(kind, name) of the session's owner: the one the collector was told of, else the custom resource
        KubeRay's labels name (a RayJob's, else the RayCluster's). The catalog shows it; retention selects by it."""
        if self.owner.kind or self.owner.name:
            return self.owner.kind, self.owner.name
        if self.kubernetes.rayjob:
            return "RayJob", self.kubernetes.rayjob
        if self.kubernetes.raycluster:
            return "RayCluster", self.kubernetes.raycluster
        return None, None


class NodeMarker(msgspec.Struct, omit_defaults=True):
    """sessions/.../nodes/{node}.json: a heartbeat while the collector runs, final after its last flush."""

    node: str
    role: str
    last_heartbeat_ms: int
    started_at_ms: int
    final: bool = False
    ray_node_id: str | None = None
    hostname: str | None = None
    events_uploaded: int = 0
    parts_uploaded: int = 0
    events_quarantined: int = 0
    spool_bytes: int = 0


class Closed(msgspec.Struct, omit_defaults=True):
    """sessions/.../closed.json: the cluster ended; nothing in the session is running any more."""

    closed_at_ms: int
    closed_by: str
    reason: str


class SnapshotManifest(msgspec.Struct, omit_defaults=True):
    """snapshots/.../snapshot.json: which raw parts a session's snapshot tables were derived from.

    A server whose snapshot schema is newer, or that sees other raw parts (a running session that
    grew), derives the tables again; otherwise it reads them and replays nothing.
    """

    schema_version: int
    parts: str  # the raw events parts' fingerprint: count, bytes, newest mtime
    closed: bool
    end_ns: int | None
    built_at_ms: int
    tables: dict[str, int] = msgspec.field(default_factory=dict)  # table -> rows


def encode(document: msgspec.Struct) -> bytes:
    return msgspec.json.encode(document)


T = TypeVar("T")


def decode(data: bytes, kind: type[T]) -> T:
    return msgspec.json.decode(data, type=kind)


class ExpiredKind(msgspec.Struct, omit_defaults=True):
    """One kind of a session's data that retention removes (or removed): its objects go after the grace."""

    at_ms: int  # when retention decided it
    delete_after_ms: int  # when its objects may be deleted (at_ms + the grace)
    reason: str  # the rule and why, as the plan printed it


class Retention(msgspec.Struct, omit_defaults=True):
    """sessions/.../retention.json: what retention decided for a session, written before anything is deleted.

    `deleted`: the whole session goes; the server hides it at once and its objects are deleted after the
    grace, this document last. `expired`: kinds (events, logs, metrics, snapshots) whose objects go while
    the session stays; the server then says the kind expired instead of showing it empty, and never
    derives a snapshot from what is left. Written again (merged) by every run; idempotent.
    """

    deleted: ExpiredKind | None = None
    expired: dict[str, ExpiredKind] = msgspec.field(default_factory=dict)
