"""What the archive holds, session by session, from listings alone: one listing of `sessions/` and one of
each data prefix, whatever the number of sessions (on S3, a request per 1,000 keys).

A listing gives each object's key, size and modification time, which is enough to tell, without
reading a document, every session's objects and bytes per kind, whether it has closed.json, a
retention document or a snapshot, and when it ended: the listing's time of closed.json, else of its
newest node marker, else of its newest part (the catalog's rule, with the store's clock instead of
the documents' content; the two differ by the upload's latency). A session some collector wrote to
within the heartbeat timeout is taken as running, even with closed.json: a worker's last flush may
still be on its way.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from archive import layout
from archive.storage import ObjectInfo, Storage

from .policy import KINDS

SESSIONS = "sessions"
# Kinds as du shows them: the session documents, then the data kinds.
ALL_KINDS = (SESSIONS, *KINDS)
RAW_KINDS = ("events", "logs", "metrics")
MANIFEST, CLOSED, RETENTION = "manifest.json", "closed.json", "retention.json"
SNAPSHOT_MANIFEST, JOBS_TABLE = "snapshot.json", "jobs.parquet"


@dataclass
class SessionObjects:
    """Every object of one session: its documents under sessions/ and its objects of each data kind."""

    ref: layout.SessionRef
    documents: dict[str, ObjectInfo] = field(default_factory=dict)  # name under sessions/{path}/ -> info
    kinds: dict[str, list[ObjectInfo]] = field(default_factory=dict)  # events/logs/metrics/snapshots -> objects

    def objects_of(self, kind: str) -> list[ObjectInfo]:
        if kind == SESSIONS:
            return list(self.documents.values())
        return self.kinds.get(kind, [])

    def bytes_of(self, kinds: Iterable[str] = ALL_KINDS) -> int:
        return sum(info.size for kind in kinds for info in self.objects_of(kind))

    def count_of(self, kinds: Iterable[str] = ALL_KINDS) -> int:
        return sum(len(self.objects_of(kind)) for kind in kinds)

    def data_kinds(self) -> list[str]:
        """The data kinds of which the session still has objects."""
        return [kind for kind in KINDS if self.kinds.get(kind)]

    @property
    def retention(self) -> ObjectInfo | None:
        return self.documents.get(RETENTION)

    def snapshot_object(self, name: str) -> ObjectInfo | None:
        return next((info for info in self.kinds.get("snapshots", []) if info.key.endswith("/" + name)), None)

    @property
    def closed(self) -> bool:
        return CLOSED in self.documents

    def _markers(self) -> list[ObjectInfo]:
        return [info for name, info in self.documents.items() if name.startswith("nodes/")]

    def _parts(self) -> list[ObjectInfo]:
        return [info for kind in RAW_KINDS for info in self.kinds.get(kind, [])]

    def end_ms(self) -> int | None:
        """closed.json's time, else the newest node marker's, else the newest part's (the catalog's order),
        else the newest object's: a session left with only a snapshot still ages. None if it has nothing."""
        closed = self.documents.get(CLOSED)
        if closed is not None:
            return closed.mtime_ns // 1_000_000
        everything = [info for kind in ALL_KINDS for info in self.objects_of(kind)]
        for found in (self._markers(), self._parts(), everything):
            if found:
                return max(info.mtime_ns for info in found) // 1_000_000
        return None

    def last_written_ms(self) -> int | None:
        """The newest object a collector wrote (not the server's snapshot, not retention's document)."""
        written = [info for name, info in self.documents.items() if name != RETENTION] + self._parts()
        return max(info.mtime_ns for info in written) // 1_000_000 if written else None

    def status(self, now_ms: int, heartbeat_timeout_ms: int) -> str:
        """running (written to within the timeout, or later than `now`), closed, or incomplete."""
        written = self.last_written_ms()
        if written is not None and written > now_ms - heartbeat_timeout_ms:
            return "running"
        return "closed" if self.closed else "incomplete"


@dataclass
class Inventory:
    sessions: dict[layout.SessionRef, SessionObjects]
    # Objects under a kind's prefix whose key names no session (left by hand, or by a foreign tool).
    unparsed: dict[str, list[ObjectInfo]]
    listed: int  # objects listed


def scan(storage: Storage) -> Inventory:
    """One listing of sessions/ and of each data prefix, grouped by session.

    The five listings run at once: on S3 each is a chain of requests (a page of 1,000 keys waits for the
    previous one), so the longest prefix sets the time, not their sum."""
    with ThreadPoolExecutor(len(ALL_KINDS), thread_name_prefix="scan") as pool:
        listings = list(pool.map(lambda kind: list(storage.list(f"{kind}/")), ALL_KINDS))
    sessions: dict[layout.SessionRef, SessionObjects] = {}
    unparsed: dict[str, list[ObjectInfo]] = {}
    # Parsing a key checks three names against a regular expression; most keys share their session's.
    refs: dict[tuple[str, str, str], layout.SessionRef | None] = {}
    listed = 0
    for kind, listing in zip(ALL_KINDS, listings, strict=True):
        for info in listing:
            listed += 1
            bits = info.key.split("/", 4)
            ref = _ref(refs, bits) if len(bits) == 5 else None
            if ref is None:
                unparsed.setdefault(kind, []).append(info)
                continue
            found = sessions.get(ref)
            if found is None:
                found = sessions[ref] = SessionObjects(ref)
            if kind == SESSIONS:
                found.documents[bits[4]] = info
            else:
                found.kinds.setdefault(kind, []).append(info)
    return Inventory(dict(sorted(sessions.items())), unparsed, listed)


def _ref(refs: dict[tuple[str, str, str], layout.SessionRef | None], bits: list[str]) -> layout.SessionRef | None:
    names = (bits[1], bits[2], bits[3])
    if names not in refs:
        try:
            refs[names] = layout.SessionRef(*names)
        except layout.InvalidName:
            refs[names] = None
    return refs[names]
