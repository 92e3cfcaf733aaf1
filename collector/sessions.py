"""The session documents a collector writes: manifest (head), node heartbeat and final marker, closed."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass

from archive import changes, documents, layout
from archive.storage import Storage

from .config import CollectorConfig

log = logging.getLogger(__name__)

COLLECTOR_VERSION = "0.1.0"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class SessionFacts:
    """What is known of a session on this node; filled in as Ray writes it."""

    start_time_ms: int
    ray_version: str | None = None
    ray_node_id: str | None = None


class SessionDocuments:
    def __init__(self, config: CollectorConfig, storage: Storage) -> None:
        self.config = config
        self.storage = storage
        self.started_at_ms = now_ms()
        self.sessions: dict[str, SessionFacts] = {}
        # Sessions Ray has moved on from: their final marker is written; no more heartbeats for them.
        self.retired: set[str] = set()
        self._written_manifest: dict[str, bytes] = {}

    def ref(self, session: str) -> layout.SessionRef:
        return layout.SessionRef(self.config.namespace, self.config.cluster, session)

    def observe(self, session: str, facts: SessionFacts | None = None) -> None:
        """Remember a session and whatever new is known of it."""
        known = self.sessions.get(session)
        if known is None:
            self.sessions[session] = facts or SessionFacts(start_time_ms=now_ms())
            return
        if facts is not None:
            known.ray_version = facts.ray_version or known.ray_version
            known.ray_node_id = facts.ray_node_id or known.ray_node_id
            known.start_time_ms = min(known.start_time_ms, facts.start_time_ms)

    def live(self) -> list[str]:
        """Sessions seen that Ray has not moved on from."""
        return [session for session in self.sessions if session not in self.retired]

    def write_manifests(self) -> None:
        """The head writes each session's manifest, again only when something in it changed."""
        if not self.config.is_head:
            return
        for session, facts in self.sessions.items():
            manifest = documents.Manifest(
                namespace=self.config.namespace,
                cluster=self.config.cluster,
                session=session,
                start_time_ms=facts.start_time_ms,
                ray_version=facts.ray_version,
                head_node=self.config.node,
                head_ray_node_id=facts.ray_node_id,
                owner=documents.Owner(kind=self.config.owner_kind, name=self.config.owner_name),
                labels=dict(self.config.labels),
                kubernetes=self.config.kubernetes,
                collector_version=COLLECTOR_VERSION,
            )
            data = documents.encode(manifest)
            if self._written_manifest.get(session) == data:
                continue
            self._put(layout.manifest_key(self.ref(session)), data, session)
            self._written_manifest[session] = data

    def write_node_markers(self, final: bool, counts: dict[str, int], only: str | None = None) -> None:
        """Heartbeats for the live sessions, or (final) the last marker of every session (or of `only`)."""
        for session, facts in self.sessions.items():
            if (only is not None and session != only) or (session in self.retired and not final):
                continue
            marker = documents.NodeMarker(
                node=self.config.node,
                role=self.config.role,
                last_heartbeat_ms=now_ms(),
                started_at_ms=self.started_at_ms,
                final=final,
                ray_node_id=facts.ray_node_id,
                hostname=socket.gethostname(),
                **counts,
            )
            key = layout.node_marker_key(self.ref(session), self.config.node)
            self._put(key, documents.encode(marker), session)

    def retire(self, session: str, counts: dict[str, int]) -> None:
        """Ray restarted with a new session: this node is done with the old one."""
        self.write_node_markers(final=True, counts=counts, only=session)
        self.retired.add(session)

    def write_closed(self, session: str, reason: str) -> None:
        if not self.config.is_head:
            return
        closed = documents.Closed(closed_at_ms=now_ms(), closed_by=self.config.node, reason=reason)
        self._put(layout.closed_key(self.ref(session)), documents.encode(closed), session)

    def _put(self, key: str, data: bytes, session: str) -> None:
        ref = self.ref(session)
        self.storage.put(key, data, tags=layout.object_tags("sessions", ref))
        # After the document: a reader of the journal who sees the marker sees the document (archive.changes).
        # A failure raises as the document's would, so that the caller writes both again.
        changes.record(self.storage, ref)
