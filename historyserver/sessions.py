"""Opened sessions: a session's snapshot tables loaded into DuckDB, kept for the next request.

The provider (the catalog) says which sessions exist and how they ended; this cache holds the few
that people are looking at, loaded as native DuckDB tables (several times faster to page and sort
than Parquet). Raw events, logs and metrics stay in Parquet and are fetched on first use.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import duckdb

from archive import layout
from archive.parts import list_live
from archive.schema import EVENTS, LOGS, METRICS
from archive.storage import Storage

from . import queries
from .mirror import Mirror, empty_select_sql, read_parquet_sql
from .reconstruct import ON_DEMAND_TABLES, OPENING_TABLES, SessionEnd
from .retention import Expiries, Expiry
from .snapshots import Snapshot, SnapshotStore, parts_fingerprint

RAW_SCHEMAS = {"events": EVENTS, "logs": LOGS, "metrics": METRICS}
# How often an open running session checks the archive for new parts.
RUNNING_RECHECK_S = 10.0
# How long an open session reads the raw parts it listed before it lists them again: the compactor deletes
# the parts it replaced only after its grace (an hour by default), so a listing this young names none of them.
RAW_RELIST_S = 60.0


class OpenSession:
    def __init__(self, ref: layout.SessionRef, end: SessionEnd, snapshot: Snapshot, storage: Storage,
                 mirror: Mirror, snapshots: SnapshotStore, expired: Expiries | None = None) -> None:  # fmt: skip
        self.ref = ref
        self.end = end
        # The kinds retention removes from this session: never read again once known, said so instead.
        self.expired: dict[str, Expiry] = dict(expired or {})
        self.snapshot = snapshot
        self.storage = storage
        self.mirror = mirror
        self.snapshots = snapshots
        self.checked_at = time.monotonic()
        self._loaded: set[str] = set()
        self._listed: dict[str, float] = {}  # raw kind -> when its parts were listed
        self._lock = threading.Lock()
        if snapshot.database is not None:  # just derived: its tables are there already
            self._db = snapshot.database
        else:
            self._db = duckdb.connect()
            for name in OPENING_TABLES:
                self._db.execute(f'CREATE TABLE "{name}" AS SELECT * FROM {read_parquet_sql([snapshot.tables[name]])}')
        self.snapshot = snapshot.detached()
        self.task_order = queries.Ordering(queries.TASKS)
        # Summaries of a session that no longer changes are computed once each (a running session is
        # opened again when new parts arrive, with fresh ones).
        self.memo: dict[tuple[str, ...], Any] = {}

    def answer_key(self, name: str, query: Iterable[tuple[str, str]]) -> tuple[Any, ...]:
        """What identifies an answer of this session kept for repeated requests (historyserver.answers): its
        raw parts and how it ended (not when its snapshot was written, which changes as on-demand tables are
        added), the answer's name and the request's query in a canonical order."""
        return (self.ref, self.snapshot.manifest.parts, self.end, name, tuple(sorted(query)))

    def memoized(self, key: tuple[str, ...], compute: Callable[[], Any]) -> Any:
        """`compute()` once per key for as long as this snapshot is open (two callers may both compute it)."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]

    def cursor(self, *tables: str) -> duckdb.DuckDBPyConnection:
        """A cursor for one request (DuckDB cursors may run in parallel), with these raw or on-demand
        tables ready: raw parts (events, logs, metrics) are read in place, an on-demand snapshot table is
        derived on first use."""
        for name in tables:
            self._ensure(name)
        return self._db.cursor()

    def _ensure(self, name: str) -> None:
        with self._lock:
            listed = self._listed.get(name)
            if name in self._loaded and (listed is None or time.monotonic() - listed < RAW_RELIST_S):
                return
            if name in ON_DEMAND_TABLES:
                self.snapshot = self.snapshots.with_table(self.ref, self.end, self.snapshot, name, self.expired)
                source = f"SELECT * FROM {read_parquet_sql([self.snapshot.tables[name]])}"
            elif name in self.expired:
                # Its objects are being deleted: a listing could catch them half gone, and a read fail.
                source = empty_select_sql(RAW_SCHEMAS[name])
            else:
                parts = list_live(self.storage, name, self.ref)  # type: ignore[arg-type]
                self._listed[name] = time.monotonic()
                paths = self.mirror.paths(parts)
                source = f"SELECT * FROM {read_parquet_sql(paths)}" if paths else empty_select_sql(RAW_SCHEMAS[name])
            self._db.execute(f'CREATE OR REPLACE VIEW "{name}" AS {source}')
            self._loaded.add(name)


class SessionCache:
    """The sessions opened lately, least recently used dropped first."""

    def __init__(self, storage: Storage, cache_dir: Path, max_open: int = 8) -> None:
        self.storage = storage
        self.mirror = Mirror(storage, cache_dir)
        self.snapshots = SnapshotStore(storage, self.mirror, cache_dir)
        self.max_open = max_open
        self._open: OrderedDict[layout.SessionRef, OpenSession] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ref: layout.SessionRef, end: SessionEnd, expired: Expiries | None = None) -> OpenSession:
        """The session opened; `expired`: the kinds retention removes from it (the catalog's row says)."""
        expired = dict(expired or {})
        with self._lock:
            session = self._open.get(ref)
            if session is not None:
                self._open.move_to_end(ref)
        if session is not None and session.expired == expired and not self._is_stale(session, end):
            return session
        snapshot = self.snapshots.load(ref, end, expired.keys())
        fresh = OpenSession(ref, end, snapshot, self.storage, self.mirror, self.snapshots, expired)
        with self._lock:
            self._open.pop(ref, None)
            self._open[ref] = fresh
            # Dropped sessions are not closed here: a request may still hold a cursor; the connection
            # goes when the last cursor does.
            while len(self._open) > self.max_open:
                self._open.popitem(last=False)
        return fresh

    def drop(self, ref: layout.SessionRef) -> None:
        """Close the session: the next request opens it again, listing its parts again."""
        with self._lock:
            self._open.pop(ref, None)

    def keep_only(self, paths: AbstractSet[str]) -> None:
        """Close the sessions that no longer exist (deleted by retention): not one more answer from them."""
        with self._lock:
            for ref in [ref for ref in self._open if ref.path not in paths]:
                del self._open[ref]

    def _is_stale(self, session: OpenSession, end: SessionEnd) -> bool:
        if session.end != end:
            return True  # it closed (or stopped reporting) since it was opened
        if end.closed or time.monotonic() - session.checked_at < RUNNING_RECHECK_S:
            return False
        session.checked_at = time.monotonic()
        parts = list_live(self.storage, "events", session.ref)
        return parts_fingerprint(parts) != session.snapshot.manifest.parts
