"""The session catalog: one DuckDB row per session in the archive, kept fresh incrementally.

Only the small JSON documents under `sessions/` are read (manifest, node markers, closed, retention). Each one is
decoded into its own table, keyed by its object key, and a session's row is rebuilt from those tables
whenever one of its documents changes; the listing's (size, mtime) of every document read is remembered
so that a document is read again only when it changed. Status also depends on the clock (a session
whose heartbeats stop turns "incomplete"), so every refresh re-judges it from the stored heartbeat times,
before listing the archive: a status is at most one refresh interval late, even while the store is down.

What a refresh lists. A full one lists every document under `sessions/` (one S3 request per 1,000); the first
refresh is full, and then one every `full_refresh_interval_s`. Between them a refresh lists the archive's change
journal (archive.changes) from where the last one stopped, less a window for writers' clocks, and then only the
sessions it names (one listing each): an idle refresh is one request, whatever the number of sessions. Where
the journal stopped is kept in the catalog's file, so a restart goes on from there; a journal older than its
retention, or more changed sessions than a full listing has pages, make a full listing instead.

Concurrency: one refresh at a time (a lock), each applying its changes in DuckDB transactions; readers
take a cursor of their own per call and never wait for a refresh, seeing the state before or after
each of its transactions.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import duckdb
import msgspec
import pyarrow as pa

from archive import catalog_index, changes, documents, layout
from archive.parts import live
from archive.storage import ObjectInfo, ObjectNotFound, Storage, StorageError, StoreUnreachable

from .cachedb import open_cache_database, registered, reset_if_other, transaction

log = logging.getLogger(__name__)

# Bump when the tables below change: a catalog file of another version is rebuilt from the archive.
CATALOG_VERSION = "2"
STATUSES = ("running", "incomplete", "closed")
DEFAULT_LIMIT = 100
# How many times the batch a first load (nothing known yet) reads and commits at once.
FIRST_LOAD_BATCHES = 10
MAX_LIMIT = 1000
# DuckDB binds OFFSET as a 64-bit integer: past this, a reason rather than its conversion error (a 500).
MAX_OFFSET = 2**62
DEFAULT_SORT = "-start_time_ms"

DocKind = Literal["manifest", "node", "closed", "retention"]
# A full listing costs a request per this many documents on S3; a refresh that would list more changed sessions
# one by one than that (and than _FEWEST_TO_LIST, which a few threads list in a moment) lists everything instead.
_LISTING_PAGE = 1000
_FEWEST_TO_LIST = 100
# Part of a catalog file's identity beside CATALOG_VERSION: files made before `documents` kept each document's
# bytes (which the archive's index objects are written from) are rebuilt rather than published without them.
_FILE_LAYOUT = "documents-with-bytes"

# The row a caller sees, in this order. Everything here is a column of `sessions`.
PUBLIC_COLUMNS: tuple[str, ...] = (
    "namespace",
    "cluster",
    "session",
    "status",
    "start_time_ms",
    "end_time_ms",
    "duration_ms",
    "ray_version",
    "owner_kind",
    "owner_name",
    "labels",
    "queue",
    "priority_class",
    "rayjob",
    "raycluster",
    "pod",
    "head_node",
    "head_ray_node_id",
    "nodes",
    "nodes_final",
    "last_heartbeat_ms",
    "closed_at_ms",
    "closed_reason",
    "closed_by",
    "events_uploaded",
    "events_quarantined",
    "parts_uploaded",
    "spool_bytes",
    "parts",
    "parts_bytes",
    "has_manifest",
    "collector_version",
    "annotations",
    "unreadable",
    "expired_kinds",
    "expired",
)
# Sorting by a map or a list means nothing to a user.
SORTABLE_COLUMNS: frozenset[str] = frozenset(PUBLIC_COLUMNS) - {
    "labels", "annotations", "unreadable", "expired_kinds", "expired"
}  # fmt: skip
_ROW_DECODER = msgspec.json.Decoder(dict[str, Any])

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS catalog_meta (name VARCHAR NOT NULL, value VARCHAR NOT NULL)",
    # Every session document seen in the last listing, and why it could not be read if it could not.
    """CREATE TABLE IF NOT EXISTS documents (
        key VARCHAR NOT NULL, path VARCHAR NOT NULL, namespace VARCHAR NOT NULL, cluster VARCHAR NOT NULL,
        session VARCHAR NOT NULL, kind VARCHAR NOT NULL, size BIGINT NOT NULL, mtime_ns BIGINT NOT NULL,
        error VARCHAR, data BLOB)""",
    """CREATE TABLE IF NOT EXISTS manifests (
        key VARCHAR NOT NULL, path VARCHAR NOT NULL, start_time_ms BIGINT, ray_version VARCHAR,
        head_node VARCHAR, head_ray_node_id VARCHAR, owner_kind VARCHAR, owner_name VARCHAR, labels JSON,
        label_terms VARCHAR[], pod VARCHAR, raycluster VARCHAR, rayjob VARCHAR, queue VARCHAR,
        priority_class VARCHAR, annotations JSON, collector_version VARCHAR, schema_version INTEGER)""",
    """CREATE TABLE IF NOT EXISTS node_markers (
        key VARCHAR NOT NULL, path VARCHAR NOT NULL, node VARCHAR NOT NULL, role VARCHAR,
        last_heartbeat_ms BIGINT, started_at_ms BIGINT, final BOOLEAN, ray_node_id VARCHAR, hostname VARCHAR,
        events_uploaded BIGINT, parts_uploaded BIGINT, events_quarantined BIGINT, spool_bytes BIGINT)""",
    """CREATE TABLE IF NOT EXISTS closures (
        key VARCHAR NOT NULL, path VARCHAR NOT NULL, closed_at_ms BIGINT, closed_by VARCHAR, reason VARCHAR)""",
    # What retention decided: a deleted session gets no row in `sessions` (so no reader can show it);
    # `expired` maps each expired kind to {at_ms, delete_after_ms, reason}.
    """CREATE TABLE IF NOT EXISTS retentions (
        key VARCHAR NOT NULL, path VARCHAR NOT NULL, deleted BOOLEAN NOT NULL, expired JSON,
        expired_kinds VARCHAR[])""",
    # The (count, hash) of each namespace's index object in the archive as this catalog last wrote it: a restart
    # does not write again the namespaces that did not change (publish_index).
    """CREATE TABLE IF NOT EXISTS index_published (
        namespace VARCHAR NOT NULL, documents BIGINT NOT NULL, digest VARCHAR NOT NULL)""",
    # Where the change journal was last read (journal_cursor_ms) and when sessions/ was last listed whole
    # (full_listing_ms), by the catalog's clock: a restart goes on from there.
    "CREATE TABLE IF NOT EXISTS refresh_state (name VARCHAR NOT NULL, value BIGINT NOT NULL)",
    # The journal's markers of the window already applied: a restart does not list their sessions again.
    "CREATE TABLE IF NOT EXISTS journal_applied (key VARCHAR NOT NULL, at_ms BIGINT NOT NULL)",
    # Filled only by refresh(scan_parts=True): listing every part is far dearer than listing sessions/.
    """CREATE TABLE IF NOT EXISTS part_stats (
        path VARCHAR NOT NULL, namespace VARCHAR NOT NULL, cluster VARCHAR NOT NULL, session VARCHAR NOT NULL,
        parts BIGINT, parts_bytes BIGINT, nodes INTEGER, first_part_ms BIGINT, last_part_ms BIGINT)""",
    # The columns every listing reads in full (the tie-break, the text search, the row itself) stay
    # uncompressed: DuckDB compresses even in-memory tables, and decompressing them made a page of 100 out of
    # 100k sessions four times slower. Other columns are few-valued and filter fine compressed.
    """CREATE TABLE IF NOT EXISTS sessions (
        path VARCHAR NOT NULL USING COMPRESSION uncompressed,
        namespace VARCHAR NOT NULL, cluster VARCHAR NOT NULL, session VARCHAR NOT NULL,
        status VARCHAR NOT NULL, start_time_ms BIGINT, end_time_ms BIGINT, duration_ms BIGINT,
        ray_version VARCHAR, owner_kind VARCHAR, owner_name VARCHAR, labels JSON, queue VARCHAR,
        priority_class VARCHAR, rayjob VARCHAR, raycluster VARCHAR, pod VARCHAR, head_node VARCHAR,
        head_ray_node_id VARCHAR, nodes INTEGER, nodes_final INTEGER, last_heartbeat_ms BIGINT,
        last_live_heartbeat_ms BIGINT, closed_at_ms BIGINT, closed_reason VARCHAR, closed_by VARCHAR,
        events_uploaded BIGINT, events_quarantined BIGINT, parts_uploaded BIGINT, spool_bytes BIGINT,
        parts BIGINT, parts_bytes BIGINT, has_manifest BOOLEAN NOT NULL, collector_version VARCHAR,
        annotations JSON, unreadable VARCHAR[], expired_kinds VARCHAR[], expired JSON, label_terms VARCHAR[],
        search_text VARCHAR USING COMPRESSION uncompressed, row_json VARCHAR USING COMPRESSION uncompressed)""",
]
_TABLES = ("catalog_meta", "documents", "manifests", "node_markers", "closures", "retentions", "part_stats",
           "sessions", "index_published", "refresh_state", "journal_applied")  # fmt: skip

_STRING = pa.string()
_INT = pa.int64()
_DOCUMENTS = pa.schema(
    [("key", _STRING), ("path", _STRING), ("namespace", _STRING), ("cluster", _STRING), ("session", _STRING),
     ("kind", _STRING), ("size", _INT), ("mtime_ns", _INT), ("error", _STRING), ("data", pa.binary())]
)  # fmt: skip
_MANIFESTS = pa.schema(
    [("key", _STRING), ("path", _STRING), ("start_time_ms", _INT), ("ray_version", _STRING),
     ("head_node", _STRING), ("head_ray_node_id", _STRING), ("owner_kind", _STRING), ("owner_name", _STRING),
     ("labels", _STRING), ("label_terms", pa.list_(_STRING)), ("pod", _STRING), ("raycluster", _STRING),
     ("rayjob", _STRING), ("queue", _STRING), ("priority_class", _STRING), ("annotations", _STRING),
     ("collector_version", _STRING), ("schema_version", pa.int32())]
)  # fmt: skip
_NODE_MARKERS = pa.schema(
    [("key", _STRING), ("path", _STRING), ("node", _STRING), ("role", _STRING), ("last_heartbeat_ms", _INT),
     ("started_at_ms", _INT), ("final", pa.bool_()), ("ray_node_id", _STRING), ("hostname", _STRING),
     ("events_uploaded", _INT), ("parts_uploaded", _INT), ("events_quarantined", _INT), ("spool_bytes", _INT)]
)  # fmt: skip
_CLOSURES = pa.schema(
    [("key", _STRING), ("path", _STRING), ("closed_at_ms", _INT), ("closed_by", _STRING), ("reason", _STRING)]
)
_RETENTIONS = pa.schema(
    [("key", _STRING), ("path", _STRING), ("deleted", pa.bool_()), ("expired", _STRING),
     ("expired_kinds", pa.list_(_STRING))]
)  # fmt: skip
_APPLIED = pa.schema([("key", _STRING), ("at_ms", _INT)])
_PART_STATS = pa.schema(
    [("path", _STRING), ("namespace", _STRING), ("cluster", _STRING), ("session", _STRING), ("parts", _INT),
     ("parts_bytes", _INT), ("nodes", pa.int32()), ("first_part_ms", _INT), ("last_part_ms", _INT)]
)  # fmt: skip
_DOC_TABLES: dict[DocKind, tuple[str, pa.Schema]] = {
    "manifest": ("manifests", _MANIFESTS),
    "node": ("node_markers", _NODE_MARKERS),
    "closed": ("closures", _CLOSURES),
    "retention": ("retentions", _RETENTIONS),
}

# A final marker means that node's collector is done with the session, so only the others keep it running.
_STATUS_SQL = """CASE WHEN closed_at_ms IS NOT NULL THEN 'closed'
    WHEN last_live_heartbeat_ms >= $running_since_ms THEN 'running' ELSE 'incomplete' END"""
# The public row as one JSON string: a page fetches this one column instead of thirty, which made a page of
# 100 out of 10,000 sessions several times faster (each column fetched costs a scan of the candidates).
_ROW_JSON_SQL = "json_object({})::VARCHAR".format(", ".join(f"'{column}', {column}" for column in PUBLIC_COLUMNS))

# Rebuilds the rows of the sessions named in `_paths` from the decoded documents and part stats.
_BUILD_SESSIONS = f"""
INSERT INTO sessions BY NAME
WITH known AS (
    SELECT DISTINCT path, namespace, cluster, session FROM documents WHERE path IN (SELECT path FROM _paths)
    UNION
    SELECT path, namespace, cluster, session FROM part_stats WHERE path IN (SELECT path FROM _paths)
), bad AS (
    SELECT path, list(key ORDER BY key) AS unreadable FROM documents
    WHERE error IS NOT NULL AND path IN (SELECT path FROM _paths) GROUP BY path
), markers AS (
    SELECT path, count(*) AS nodes, count(*) FILTER (WHERE final) AS nodes_final,
        max(last_heartbeat_ms) AS last_heartbeat_ms,
        max(last_heartbeat_ms) FILTER (WHERE NOT final) AS last_live_heartbeat_ms,
        min(started_at_ms) AS first_started_ms,
        min(node) FILTER (WHERE role = 'head') AS head_marker_node,
        sum(events_uploaded) AS events_uploaded, sum(events_quarantined) AS events_quarantined,
        sum(parts_uploaded) AS parts_uploaded, sum(spool_bytes) AS spool_bytes
    FROM node_markers WHERE path IN (SELECT path FROM _paths) GROUP BY path
), joined AS (
    SELECT k.path, k.namespace, k.cluster, k.session,
        -- Without a manifest the start is a guess: the first collector's start, else the first part.
        coalesce(m.start_time_ms, n.first_started_ms, p.first_part_ms) AS start_time_ms,
        coalesce(c.closed_at_ms, n.last_heartbeat_ms, p.last_part_ms) AS end_time_ms,
        m.ray_version, m.owner_kind, m.owner_name, coalesce(m.labels, '{{}}') AS labels, m.queue,
        m.priority_class, m.rayjob, m.raycluster, m.pod, coalesce(m.head_node, n.head_marker_node) AS head_node,
        m.head_ray_node_id, coalesce(n.nodes, p.nodes, 0) AS nodes, coalesce(n.nodes_final, 0) AS nodes_final,
        n.last_heartbeat_ms, n.last_live_heartbeat_ms, c.closed_at_ms, c.reason AS closed_reason, c.closed_by,
        coalesce(n.events_uploaded, 0) AS events_uploaded, coalesce(n.events_quarantined, 0) AS events_quarantined,
        coalesce(n.parts_uploaded, 0) AS parts_uploaded, coalesce(n.spool_bytes, 0) AS spool_bytes,
        p.parts, p.parts_bytes, m.path IS NOT NULL AS has_manifest, m.collector_version,
        coalesce(m.annotations, '{{}}') AS annotations, coalesce(b.unreadable, []) AS unreadable,
        coalesce(r.expired_kinds, []) AS expired_kinds, coalesce(r.expired, '{{}}') AS expired,
        coalesce(m.label_terms, []) AS label_terms,
        lower(concat_ws(' ', k.namespace, k.cluster, k.session, m.owner_name, m.rayjob, m.raycluster))
            AS search_text
    FROM known k
    LEFT JOIN manifests m USING (path)
    LEFT JOIN markers n USING (path)
    LEFT JOIN closures c USING (path)
    LEFT JOIN part_stats p USING (path)
    LEFT JOIN bad b USING (path)
    LEFT JOIN retentions r USING (path)
    -- A deleted session does not exist, whatever of it is still in the archive until the cleaner is done.
    WHERE NOT coalesce(r.deleted, false)
)
SELECT *, {_ROW_JSON_SQL} AS row_json FROM (
    SELECT *, greatest(end_time_ms - start_time_ms, 0) AS duration_ms, {_STATUS_SQL} AS status FROM joined
)
"""


@dataclass(frozen=True)
class RefreshStats:
    """What one refresh did."""

    documents_listed: int = 0
    documents_read: int = 0
    documents_unreadable: int = 0
    documents_removed: int = 0
    documents_from_index: int = 0  # of documents_read, how many came from the archive's index objects, not a GET
    parts_listed: int = 0
    sessions_added: int = 0
    sessions_updated: int = 0
    sessions_removed: int = 0
    full_listing: bool = True  # sessions/ listed whole; else the journal and the sessions it named
    changes_listed: int = 0  # markers the journal listing returned that were not applied yet
    sessions_listed: int = 0  # sessions whose documents were listed on their own (incremental refresh)
    seconds: float = 0.0


@dataclass(frozen=True)
class SessionQuery:
    """Which sessions to list, in what order, which page. Checked by Catalog.list_sessions (ValueError)."""

    namespace: str | None = None
    cluster: str | None = None
    owner: str | None = None  # the owner's name, or "Kind/name" (the kind compared without case)
    labels: Sequence[str] = ()  # each "key=value", or a bare "key" for "has this label"; all must hold
    status: str | None = None  # running, incomplete or closed
    queue: str | None = None
    started_after_ms: int | None = None  # inclusive
    started_before_ms: int | None = None  # exclusive
    text: str | None = None  # a substring of namespace, cluster, session, owner, RayJob or RayCluster names
    # Only sessions of these namespaces (the viewer's, historyserver.access); None: every namespace.
    namespaces: frozenset[str] | None = None
    sort: str | None = DEFAULT_SORT  # a column of SORTABLE_COLUMNS, "-" first for descending
    limit: int = DEFAULT_LIMIT
    offset: int = 0


@dataclass(frozen=True)
class _DocRef:
    """A session document's place: which session, which kind, which node (markers only)."""

    key: str
    ref: layout.SessionRef
    kind: DocKind
    node: str | None = None


@dataclass
class _Fetched:
    """A document as read: its decoded row, or why there is none."""

    doc: _DocRef
    info: ObjectInfo
    row: dict[str, Any] | None = None
    data: bytes | None = None  # as read, kept for the archive's index objects
    from_index: bool = False  # taken from an index object rather than read from sessions/
    error: str | None = None  # the document is there but is not what it should be
    gone: bool = False  # deleted between the listing and the read
    failed: bool = False  # the store did not answer: try again next refresh


@dataclass
class _Tally:
    read: int = 0
    from_index: int = 0
    unreadable: int = 0
    removed: int = 0
    touched: set[str] = field(default_factory=set)

    def add(self, other: _Tally) -> None:
        self.read += other.read
        self.from_index += other.from_index
        self.unreadable += other.unreadable
        self.removed += other.removed
        self.touched |= other.touched


class Catalog:
    """Every session of the archive, to list, filter, sort and page in milliseconds."""

    def __init__(
        self,
        storage: Storage,
        database: Path | None = None,
        heartbeat_timeout_s: float = 90.0,
        *,
        clock: Callable[[], float] = time.time,
        fetch_threads: int = 8,
        batch_size: int = 2000,
        use_index: bool = False,
        full_refresh_interval_s: float = 0.0,
        journal_window_s: float = 300.0,
    ) -> None:
        """`database` None keeps the catalog in memory; a file keeps it across restarts (nothing re-read).
        A file that cannot be opened or read (corrupt, another version) is rebuilt; one another process holds
        is left alone, and the catalog kept in memory.

        `clock` (seconds since the epoch) judges heartbeats; `fetch_threads` documents are read at once,
        and every `batch_size` of them are committed together, so a first refresh fills the list as it goes.
        `use_index`: a first refresh with nothing known reads the archive's index objects (`catalog/`,
        archive.catalog_index) and GETs only the documents they do not hold as listed; see publish_index.
        `full_refresh_interval_s`: how often a refresh lists all of sessions/; the others read the change journal
        (0: every refresh lists everything, as for an archive whose writers do not journal). `journal_window_s`:
        how far before the last journal read the next one begins (writers' clock skew, markers landing late).
        """
        self.storage = storage
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self._clock = clock
        self._fetch_threads = fetch_threads
        self._batch_size = batch_size
        self._cursor_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._db = open_cache_database(database, self._prepare_schema, _TABLES, "catalog")
        # Read on first use, by the first refresh (a second at 100,000 sessions, which the port must not wait for).
        self._seen_documents: dict[str, tuple[int, int]] | None = None
        self._seen_lock = threading.Lock()
        # Whether the file held a catalog: it can be served at once, before the first refresh.
        [(documents,)] = self._db.execute("SELECT count(*) FROM documents").fetchall()
        self.restored = documents > 0
        # Keys under sessions/ that are no session document (stray files): not parsed again.
        self._ignored: set[str] = set()
        self._use_index = use_index and not self.restored
        # Documents of the index objects, by key, until the first refresh that used them is done.
        self._index_docs: dict[str, catalog_index.IndexedDocument] = {}
        # Per namespace, the (count, hash) of the documents its index object in the archive holds, as this
        # process last read or wrote it (so an unchanged namespace is not written again), and when it wrote it.
        self._published: dict[str, tuple[int, int]] = {
            namespace: (count, int(digest))
            for namespace, count, digest in self._db.execute("SELECT * FROM index_published").fetchall()
        }
        self._published_saved = dict(self._published)
        # A restart looks at its objects again after the interval, not at once: a look reads and hashes every
        # document (2 s of CPU at 100,000 sessions, which slowed the first pages a restart served).
        self._published_at: dict[str, float] = dict.fromkeys(self._published, time.monotonic())
        # Per namespace, its object's digest and the point of the journal (journal_cursor_ms) at which this
        # process last saw the object match its tables; written out as the objects' state for new replicas.
        self._confirmed: dict[str, tuple[tuple[int, int], int | None]] = {}
        self._state_written_at = -math.inf
        self._published_generation = -1  # the catalog's generation when every namespace was last looked at
        self.full_refresh_interval_s = full_refresh_interval_s
        self.journal_window_s = journal_window_s
        state = dict(self._db.execute("SELECT name, value FROM refresh_state").fetchall())
        self._journal_cursor_ms: int | None = state.get("journal_cursor_ms") if self.restored else None
        self._full_listing_ms: int | None = state.get("full_listing_ms") if self.restored else None
        # Markers of the window already applied (key: its time), so a marker listed again costs nothing.
        self._applied: dict[str, int] = dict(self._db.execute("SELECT key, at_ms FROM journal_applied").fetchall())
        # Documents the current full listing found, once it came back (the first load's "of how many").
        self.documents_listed: int | None = None
        # Documents taken from the index objects since the start, as their batches are applied (the first load's
        # progress counts them as read).
        self.documents_from_index = 0
        # Counts the refreshes that changed a session's row: a pass over every session (the job index's) that saw
        # this generation has nothing new to see until it changes.
        self.generation = 0
        # Every session's path as the last whole refresh left them; None until one is done.
        self._paths: frozenset[str] | None = None

    def close(self) -> None:
        self._db.close()

    @property
    def _seen(self) -> dict[str, tuple[int, int]]:
        """(size, mtime_ns) of every document as last read: what makes a refresh of an unchanged archive free."""
        with self._seen_lock:
            if self._seen_documents is None:
                with closing(self._cursor()) as cur:
                    rows = cur.execute("SELECT key, size, mtime_ns FROM documents").fetchall()
                self._seen_documents = {key: (size, mtime_ns) for key, size, mtime_ns in rows}
            return self._seen_documents

    def __enter__(self) -> Catalog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        # A DuckDB connection is not safe across threads, but cursors (connections of their own to
        # the same database) are; only making one needs the parent to itself.
        with self._cursor_lock:
            return self._db.cursor()

    def _prepare_schema(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Create the tables; a catalog file of another version or another archive starts afresh."""
        wanted = {"version": CATALOG_VERSION, "archive": self.storage.uri, "layout": _FILE_LAYOUT}
        reset_if_other(cur, "catalog_meta", wanted, _TABLES, "catalog")
        for statement in _SCHEMA:
            cur.execute(statement)
        if cur.execute("SELECT count(*) FROM catalog_meta").fetchone() == (0,):
            cur.executemany("INSERT INTO catalog_meta VALUES (?, ?)", list(wanted.items()))

    # -- refresh ---------------------------------------------------------------------------------

    def refresh(self, scan_parts: bool = False) -> RefreshStats:
        """Read what changed under sessions/ since the last refresh; re-judge every status by the clock.

        `scan_parts` also lists events/, logs/ and metrics/ (every part: much dearer) to count parts and
        bytes per session and to show sessions that have parts but no session document yet.
        """
        with self._refresh_lock:
            started = time.perf_counter()
            now_ms = int(self._clock() * 1000)
            with closing(self._cursor()) as cur:
                running_since_ms = self._running_since_ms()
                before = self._paths if self._paths is not None else self._session_paths(cur)
                self._paths = None  # until this refresh is done: one that fails leaves the next to read them anew
                aged = self._rejudge_statuses(cur, running_since_ms)
                markers: list[changes.Change] = []
                changed: dict[str, layout.SessionRef] | None = None  # None: list every document
                if not self._full_listing_due(now_ms):
                    markers = self._read_journal(now_ms)
                    changed = {marker.ref.path: marker.ref for marker in markers}
                    if len(changed) > max(math.ceil(len(self._seen) / _LISTING_PAGE), _FEWEST_TO_LIST):
                        changed = None  # more sessions to list one by one than a full listing has pages
                started_from_index = None
                if changed is None and self._use_index and not self._seen and self.full_refresh_interval_s > 0:
                    started_from_index = self._start_from_index(cur, running_since_ms, now_ms)
                if started_from_index is not None:
                    listing, tally, markers = started_from_index
                    changed = {marker.ref.path: marker.ref for marker in markers}
                elif changed is None:
                    if self.full_refresh_interval_s > 0 and not markers:
                        # Before the listing: a marker seen now is a change the listing below has (the document
                        # is written first), so the next refresh need not list its session again.
                        markers = self._read_journal(now_ms)
                    listing, tally = self._full_listing(cur, running_since_ms)
                    self._full_listing_ms = now_ms
                else:
                    listing = self._list_sessions(changed.values())
                    tally = self._apply_listing(cur, listing, running_since_ms, set(changed))
                if self.full_refresh_interval_s > 0:
                    self._journal_read(cur, now_ms, markers)
                parts_listed = 0
                if scan_parts:
                    parts_listed, stats = self._scan_parts()
                    tally.touched |= self._apply_part_stats(cur, stats, running_since_ms)
                # Only a rebuilt session can have come or gone: an idle refresh of 100,000 sessions read their
                # paths twice, a tenth of a second of the server's CPU every refresh.
                after = self._session_paths(cur) if tally.touched else before
                self._paths = after
                if tally.touched or aged:
                    self.generation += 1
        return RefreshStats(
            full_listing=changed is None,
            changes_listed=len(markers),
            sessions_listed=len(changed) if changed is not None else 0,
            documents_listed=len(listing),
            documents_read=tally.read,
            documents_unreadable=tally.unreadable,
            documents_removed=tally.removed,
            documents_from_index=tally.from_index,
            parts_listed=parts_listed,
            sessions_added=len(after - before),
            sessions_updated=len((tally.touched | aged) & before & after),
            sessions_removed=len(before - after),
            seconds=time.perf_counter() - started,
        )

    def _running_since_ms(self) -> int:
        return int((self._clock() - self.heartbeat_timeout_s) * 1000)

    @staticmethod
    def _session_paths(cur: duckdb.DuckDBPyConnection) -> frozenset[str]:
        return frozenset(row[0] for row in cur.execute("SELECT path FROM sessions").fetchall())

    @staticmethod
    def _rejudge_statuses(cur: duckdb.DuckDBPyConnection, running_since_ms: int) -> set[str]:
        """Sessions whose status the clock alone changed (heartbeats that went quiet)."""
        params = {"running_since_ms": running_since_ms}
        with transaction(cur):
            # A closed session stays closed whatever the clock says: only the others are judged again (a tenth of
            # 100,000 sessions, where judging them all took 60 ms every refresh).
            rows = cur.execute(f"UPDATE sessions SET status = {_STATUS_SQL} WHERE status <> 'closed' AND "
                               f"status <> {_STATUS_SQL} RETURNING path", params).fetchall()  # fmt: skip
            if rows:
                cur.execute(f"UPDATE sessions SET row_json = {_ROW_JSON_SQL} WHERE status <> row_json->>'status'")
        return {row[0] for row in rows}

    def _full_listing(
        self, cur: duckdb.DuckDBPyConnection, running_since_ms: int
    ) -> tuple[dict[str, ObjectInfo], _Tally]:
        """List every document under sessions/ and apply what changed (with the index objects, at a first)."""
        self.documents_listed = None
        if self._use_index and not self._index_docs:
            self._index_docs = self._read_index_objects()
        listing = {info.key: info for info in self.storage.list("sessions/")}
        self.documents_listed = len(listing)
        with _checkpointed_once(cur, first=not self._seen):
            tally = self._apply_listing(cur, listing, running_since_ms)
        # Only after a whole pass (a failed one tries again with the same index documents): what the
        # index held as listed is in the tables now, the rest was read or is gone.
        self._use_index, self._index_docs = False, {}
        return listing, tally

    def _start_from_index(
        self, cur: duckdb.DuckDBPyConnection, running_since_ms: int, now_ms: int
    ) -> tuple[dict[str, ObjectInfo], _Tally, list[changes.Change]] | None:
        """A first load without listing sessions/: the index objects as the listing, then the sessions the journal
        names since the state's oldest point (archive.catalog_index). A namespace whose object does not match the
        state is listed on its own. None, with nothing applied, when the state cannot vouch for the objects (none,
        unreadable, or older than the journal's retention): the caller lists everything."""
        try:
            state = catalog_index.decode_state(self.storage.get(layout.CATALOG_INDEX_STATE_KEY))
        except ObjectNotFound:
            return None
        except (StorageError, catalog_index.InvalidIndex) as exc:
            log.warning("not starting from the catalog index state (listing every session document): %s", exc)
            return None
        if not state.namespaces:
            return None
        oldest_ms = min(entry.journal_cursor_ms for entry in state.namespaces.values())
        if now_ms - oldest_ms >= changes.RETENTION_MS - self.journal_window_s * 1000:
            return None
        self.documents_listed = None
        self._index_docs = self._read_index_objects()
        matching = {ns for ns, entry in state.namespaces.items()
                    if self._published.get(ns) == (entry.count, int(entry.digest))}  # fmt: skip
        listing = {key: ObjectInfo(key, doc.size, doc.mtime_ns) for key, doc in self._index_docs.items()
                   if key.split("/", 2)[1] in matching}  # fmt: skip
        for namespace in sorted(state.namespaces.keys() - matching):
            listing.update((info.key, info) for info in self.storage.list(f"sessions/{namespace}/"))
        self.documents_listed = len(listing)
        with _checkpointed_once(cur, first=True):
            tally = self._apply_listing(cur, listing, running_since_ms)
        self._journal_cursor_ms = oldest_ms
        markers = self._read_journal(now_ms)
        named = {marker.ref.path: marker.ref for marker in markers}
        if len(named) > max(math.ceil(len(listing) / _LISTING_PAGE), _FEWEST_TO_LIST):
            # More sessions to list one by one than a full listing has pages (a state hours old on a busy
            # platform): the full listing, its unchanged documents still taken from the objects.
            listing = {info.key: info for info in self.storage.list("sessions/")}
            tally.add(self._apply_listing(cur, listing, running_since_ms))
            self._full_listing_ms = now_ms
        else:
            since = self._list_sessions(named.values())
            tally.add(self._apply_listing(cur, since, running_since_ms, set(named)))
            listing.update(since)
            # Ready without it, but the next refresh lists sessions/ whole, in the background: a writer that does
            # not journal (an older collector, a copy made by hand) has its sessions found minutes after the start.
            self._full_listing_ms = None
        self._use_index, self._index_docs = False, {}
        log.info("catalog started from the index objects of %d namespaces (%d listed on their own) and %d journal "
                 "markers since %s", len(state.namespaces), len(state.namespaces.keys() - matching), len(markers),
                 time.strftime("%H:%M:%S UTC", time.gmtime(oldest_ms / 1000)))  # fmt: skip
        return listing, tally, markers

    # -- the change journal ----------------------------------------------------------------------

    def _full_listing_due(self, now_ms: int) -> bool:
        """Whether this refresh lists every document rather than the journal's changes."""
        if self.full_refresh_interval_s <= 0 or self._journal_cursor_ms is None or self._full_listing_ms is None:
            return True
        if now_ms - self._full_listing_ms >= self.full_refresh_interval_s * 1000:
            return True
        # Markers older than the journal's retention may be gone: it no longer says everything since the cursor.
        return now_ms - self._journal_cursor_ms >= changes.RETENTION_MS - self.journal_window_s * 1000

    def _read_journal(self, now_ms: int) -> list[changes.Change]:
        """The markers from the window before the last read (or before now, when there was none) on."""
        cursor = now_ms if self._journal_cursor_ms is None else min(self._journal_cursor_ms, now_ms)
        since = cursor - int(self.journal_window_s * 1000)
        return list(changes.changes_since(self.storage, since, known=self._applied))

    def _journal_read(self, cur: duckdb.DuckDBPyConnection, now_ms: int, markers: list[changes.Change]) -> None:
        """The journal is applied up to `now_ms` (when it was listed): remember it, here and in the file."""
        self._journal_cursor_ms = now_ms
        new = {marker.key: marker.at_ms for marker in markers if marker.key not in self._applied}
        self._applied.update(new)
        oldest = now_ms - int(self.journal_window_s * 1000)
        self._applied = {key: at_ms for key, at_ms in self._applied.items() if at_ms >= oldest}
        with transaction(cur):
            cur.execute("DELETE FROM journal_applied WHERE at_ms < ?", [oldest])
            _insert(cur, "journal_applied", [{"key": key, "at_ms": at_ms} for key, at_ms in new.items()], _APPLIED)
            cur.execute("DELETE FROM refresh_state")
            # No full listing yet (a replica started from the index objects): none is written, and a restart makes it.
            state = [("journal_cursor_ms", now_ms)]
            if self._full_listing_ms is not None:
                state.append(("full_listing_ms", self._full_listing_ms))
            cur.executemany("INSERT INTO refresh_state VALUES (?, ?)", state)

    def _list_sessions(self, refs: Iterable[layout.SessionRef]) -> dict[str, ObjectInfo]:
        """The documents of these sessions, a listing each (a few at once: on S3 each is a request's wait)."""
        prefixes = [layout.session_prefix(ref) for ref in refs]
        threads = min(self._fetch_threads, len(prefixes))
        if threads <= 1:
            listings = [list(self.storage.list(prefix)) for prefix in prefixes]
        else:
            with ThreadPoolExecutor(threads, thread_name_prefix="catalog-list") as pool:
                listings = list(pool.map(lambda prefix: list(self.storage.list(prefix)), prefixes))
        return {info.key: info for listing in listings for info in listing}

    def _changed_documents(self, listing: dict[str, ObjectInfo]) -> list[tuple[_DocRef, ObjectInfo]]:
        """Documents new or different since they were read; only these keys are parsed, let alone read."""
        changed: list[tuple[_DocRef, ObjectInfo]] = []
        for key, info in listing.items():
            if self._seen.get(key) == (info.size, info.mtime_ns) or key in self._ignored:
                continue
            doc = _parse_session_key(key)
            if doc is None:
                self._ignored.add(key)
            else:
                changed.append((doc, info))
        return changed

    def _apply_listing(
        self,
        cur: duckdb.DuckDBPyConnection,
        listing: dict[str, ObjectInfo],
        running_since_ms: int,
        paths: set[str] | None = None,
    ) -> _Tally:
        """Read and apply what the listing says changed; what it lacks is removed, of the sessions in `paths` if
        it is only theirs (None: the listing is of every session)."""
        tally = _Tally()
        changed = self._changed_documents(listing)
        # A first load commits ten times fewer, bigger batches: each commit's work grows with the tables (a new
        # replica of 100,000 sessions spent half its time in 221 of them); later refreshes change little.
        batch = self._batch_size if self._seen else self._batch_size * FIRST_LOAD_BATCHES
        for start in range(0, len(changed), batch):
            fetched = self._fetch(changed[start : start + batch])
            self._apply_documents(cur, fetched, running_since_ms, tally)
        known = self._seen.keys() if paths is None else self._keys_of(cur, paths)
        removed = sorted(known - listing.keys())
        if removed:
            self._remove_documents(cur, removed, running_since_ms, tally)
        return tally

    def _fetch(self, batch: Sequence[tuple[_DocRef, ObjectInfo]]) -> list[_Fetched]:
        threads = min(self._fetch_threads, len(batch))
        if threads <= 1:
            return self._read_all(batch)
        # Reads from an object store are mostly waiting: a few at once make a cold start on S3 bearable.
        # A slice per thread rather than a task per document: futures cost more than a local read.
        with ThreadPoolExecutor(threads, thread_name_prefix="catalog-read") as pool:
            slices = pool.map(self._read_all, [batch[i::threads] for i in range(threads)])
            return [fetched for part in slices for fetched in part]

    def _read_all(self, batch: Sequence[tuple[_DocRef, ObjectInfo]]) -> list[_Fetched]:
        return [self._read(doc, info) for doc, info in batch]

    def _read(self, doc: _DocRef, info: ObjectInfo) -> _Fetched:
        fetched = _Fetched(doc, info)
        indexed = self._index_docs.get(doc.key)
        try:
            if indexed is not None and (indexed.size, indexed.mtime_ns) == (info.size, info.mtime_ns):
                # The index holds this very version (by the listing's size and mtime): no GET.
                data, fetched.from_index = indexed.data, True
            else:
                data = self.storage.get(doc.key)
        except ObjectNotFound:
            fetched.gone = True
            return fetched
        except StoreUnreachable:  # an outage is logged once (historyserver.storehealth), not per document
            fetched.failed = True
            return fetched
        except StorageError as exc:
            log.warning("could not read session document %s (trying again next refresh): %s", doc.key, exc)
            fetched.failed = True
            return fetched
        fetched.data = data
        try:
            fetched.row = _decode_document(doc, data)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            log.warning("unreadable session document %s, shown without it: %s", doc.key, exc)
            fetched.error = str(exc) or type(exc).__name__
        return fetched

    def _apply_documents(
        self, cur: duckdb.DuckDBPyConnection, fetched: list[_Fetched], running_since_ms: int, tally: _Tally
    ) -> None:
        """Replace the decoded rows of these documents and rebuild their sessions, in one transaction."""
        kept = [item for item in fetched if not item.failed and not item.gone]
        gone = [item.doc.key for item in fetched if item.gone]
        keys = [item.doc.key for item in kept] + gone
        paths = {item.doc.ref.path for item in fetched if not item.failed}
        if not keys:
            return
        with transaction(cur):
            # Only keys read before have rows to replace (all of them, after a first load: none during it).
            self._delete_keys(cur, [key for key in keys if key in self._seen])
            _insert(cur, "documents", [_listing_row(item) for item in kept], _DOCUMENTS)
            for kind, (table, schema) in _DOC_TABLES.items():
                rows = [item.row for item in kept if item.row is not None and item.doc.kind == kind]
                _insert(cur, table, rows, schema)
            self._rebuild_sessions(cur, paths, running_since_ms)
        # Only once committed: a failed transaction leaves these to be read again next time.
        for item in kept:
            self._seen[item.doc.key] = (item.info.size, item.info.mtime_ns)
        for key in gone:
            self._seen.pop(key, None)
        tally.read += len(kept)
        taken = sum(1 for item in kept if item.from_index)
        tally.from_index += taken
        self.documents_from_index += taken
        tally.unreadable += sum(1 for item in kept if item.error is not None)
        tally.removed += len(gone)
        tally.touched |= paths

    def _remove_documents(
        self, cur: duckdb.DuckDBPyConnection, keys: list[str], running_since_ms: int, tally: _Tally
    ) -> None:
        paths = {doc.ref.path for doc in map(_parse_session_key, keys) if doc is not None}
        with transaction(cur):
            self._delete_keys(cur, keys)
            self._rebuild_sessions(cur, paths, running_since_ms)
        for key in keys:
            self._seen.pop(key, None)
        tally.removed += len(keys)
        tally.touched |= paths

    @staticmethod
    def _keys_of(cur: duckdb.DuckDBPyConnection, paths: set[str]) -> set[str]:
        """The documents known of these sessions."""
        rows = cur.execute("SELECT key FROM documents WHERE list_contains(?, path)", [sorted(paths)]).fetchall()
        return {key for (key,) in rows}

    @staticmethod
    def _delete_keys(cur: duckdb.DuckDBPyConnection, keys: list[str]) -> None:
        if not keys:
            return
        with registered(cur, "_keys", pa.table({"key": pa.array(keys, _STRING)})):
            for table in ("documents", *(table for table, _ in _DOC_TABLES.values())):
                cur.execute(f"DELETE FROM {table} WHERE key IN (SELECT key FROM _keys)")

    @staticmethod
    def _rebuild_sessions(cur: duckdb.DuckDBPyConnection, paths: Iterable[str], running_since_ms: int) -> None:
        with registered(cur, "_paths", pa.table({"path": pa.array(sorted(paths), _STRING)})):
            cur.execute("DELETE FROM sessions WHERE path IN (SELECT path FROM _paths)")
            cur.execute(_BUILD_SESSIONS, {"running_since_ms": running_since_ms})

    def _scan_parts(self) -> tuple[int, dict[str, dict[str, Any]]]:
        """(parts listed, per-session counts) over every raw part in the archive."""
        stats: dict[str, dict[str, Any]] = {}
        nodes: dict[str, set[str]] = {}
        listed = 0
        for kind in layout.PART_KINDS:
            for info in live(self.storage.list(f"{kind}/")):
                parsed = layout.parse_data_key(info.key)
                if parsed is None:
                    continue
                listed += 1
                ref, node = parsed.ref, parsed.node
                mtime_ms = info.mtime_ns // 1_000_000
                row = stats.get(ref.path)
                if row is None:
                    row = stats[ref.path] = {
                        "path": ref.path, "namespace": ref.namespace, "cluster": ref.cluster,
                        "session": ref.session, "parts": 0, "parts_bytes": 0, "nodes": 0,
                        "first_part_ms": mtime_ms, "last_part_ms": mtime_ms,
                    }  # fmt: skip
                    nodes[ref.path] = set()
                row["parts"] += 1
                row["parts_bytes"] += info.size
                row["first_part_ms"] = min(row["first_part_ms"], mtime_ms)
                row["last_part_ms"] = max(row["last_part_ms"], mtime_ms)
                nodes[ref.path].add(node)
        for path, row in stats.items():
            row["nodes"] = len(nodes[path])
        return listed, stats

    def _apply_part_stats(
        self, cur: duckdb.DuckDBPyConnection, stats: dict[str, dict[str, Any]], running_since_ms: int
    ) -> set[str]:
        """Replace the part counts that changed and rebuild those sessions; the sessions touched."""
        names = _PART_STATS.names
        old = {
            row[0]: dict(zip(names, row, strict=True))
            for row in cur.execute(f"SELECT {', '.join(names)} FROM part_stats").fetchall()
        }
        changed = {path for path in old.keys() | stats.keys() if old.get(path) != stats.get(path)}
        if not changed:
            return changed
        changed_paths = pa.table({"path": pa.array(sorted(changed), _STRING)})
        with transaction(cur), registered(cur, "_changed", changed_paths):
            cur.execute("DELETE FROM part_stats WHERE path IN (SELECT path FROM _changed)")
            _insert(cur, "part_stats", [stats[path] for path in changed if path in stats], _PART_STATS)
            self._rebuild_sessions(cur, changed, running_since_ms)
        return changed

    # -- the archive's index objects ---------------------------------------------------------------

    def _read_index_objects(self) -> dict[str, catalog_index.IndexedDocument]:
        """Every document the archive's index objects hold. An object that cannot be read or decoded is skipped:
        its namespace's documents are then read one by one, and publish_index writes it again."""
        found: dict[str, catalog_index.IndexedDocument] = {}
        try:
            keys = [info.key for info in self.storage.list(layout.CATALOG_INDEX_PREFIX)]
        except StorageError as exc:
            log.warning("could not list the catalog index objects; reading every session document: %s", exc)
            return found
        read_at, objects = time.monotonic(), 0
        for key in keys:
            namespace = layout.parse_catalog_index_key(key)
            if namespace is None:
                continue
            try:
                docs = catalog_index.decode_index(namespace, self.storage.get(key))
            except ObjectNotFound:
                continue
            except StorageError as exc:
                log.warning("could not read catalog index %s; reading its documents instead: %s", key, exc)
                continue
            except catalog_index.InvalidIndex as exc:
                log.warning("ignoring catalog index %s (it will be written again): %s", key, exc)
                # A digest no documents have: publish_index replaces the object (or deletes it, if no documents).
                self._published[namespace] = (-1, 0)
                continue
            found.update(docs)
            objects += 1
            # What the archive holds now: a namespace that has not changed since is not written again.
            self._published[namespace] = _index_digest(list(docs.values()))
            self._published_at[namespace] = read_at
        if found:
            log.info("catalog index: %s documents from %d index objects", f"{len(found):,}", objects)
        return found

    def publish_index(self, min_interval_s: float = 300.0) -> list[str]:
        """Write the index object (archive.catalog_index) of every namespace whose documents changed since this
        process last read or wrote it, at most once per `min_interval_s` per namespace (a running session's
        heartbeats change it every 30 s; a new replica reads those few documents anyway), and delete the object
        of a namespace with no document left. Any replica may: the content depends only on the documents.
        The keys written or deleted; a failure is logged and tried again after the interval."""
        now = time.monotonic()
        changed: list[str] = []
        # Read before the tables: they are at least as new as this point of the journal.
        journal_cursor_ms = self._journal_cursor_ms
        with self._publish_lock, closing(self._cursor()) as cur:
            if self.generation == self._published_generation:
                # No session changed since the last look: no namespace's documents did. (Each look reads every
                # document: seconds of CPU at 100,000 sessions, which a restart spent again every refresh.)
                for namespace, digest in self._published.items():
                    self._confirmed[namespace] = (digest, journal_cursor_ms)
                self._publish_state(cur, now, min_interval_s, changed)
                return changed
            generation = self.generation
            due = [namespace for namespace in self._published.keys() | self._namespaces_with_documents(cur)
                   if now - self._published_at.get(namespace, -math.inf) >= min_interval_s]  # fmt: skip
            if not due:
                return changed
            current = {namespace: _index_digest(docs) for namespace, docs in self._documents_of(cur, due).items()}
            failed = False
            for namespace in sorted(due):
                digest = current.get(namespace)
                if digest == self._published.get(namespace):
                    self._published_at[namespace] = now  # looked at: not again before the interval
                    self._confirmed[namespace] = (digest, journal_cursor_ms)
                    continue
                key = layout.catalog_index_key(namespace)
                try:
                    if digest is None:
                        self.storage.delete(key)
                    else:
                        docs = self._documents_of(cur, [namespace])[namespace]
                        data = catalog_index.encode_index(namespace, docs)
                        self.storage.put(key, data, {"kind": "catalog", "namespace": namespace})
                except StorageError as exc:
                    log.warning("could not write catalog index %s (trying again in %.0f s): %s", key, min_interval_s,
                                exc)  # fmt: skip
                    self._published_at[namespace] = now
                    failed = True
                    continue
                self._published_at[namespace] = now
                if digest is None:
                    self._published.pop(namespace, None)
                    self._confirmed.pop(namespace, None)
                else:
                    self._published[namespace] = digest
                    self._confirmed[namespace] = (digest, journal_cursor_ms)
                changed.append(key)
            if not failed and len(due) == len(self._published.keys() | self._namespaces_with_documents(cur)):
                self._published_generation = generation  # every namespace looked at, and written if it changed
            known = {ns: digest for ns, digest in self._published.items() if digest[0] >= 0}
            if known != self._published_saved:  # written, or found as they are (a replica's objects read)
                with transaction(cur):
                    cur.execute("DELETE FROM index_published")
                    cur.executemany("INSERT INTO index_published VALUES (?, ?, ?)",
                                    [(ns, count, str(digest)) for ns, (count, digest) in sorted(known.items())])
                self._published_saved = known
            self._publish_state(cur, now, min_interval_s, changed)
        return changed

    def _publish_state(self, cur: duckdb.DuckDBPyConnection, now: float, min_interval_s: float,
                       changed: list[str]) -> None:  # fmt: skip
        """Write the index objects' state (archive.catalog_index.IndexState) once objects were written, else once
        per `min_interval_s` (its journal points must stay within the journal's retention). Only when every
        namespace's object is known current at a point of the journal: a replica trusts it to cover them all."""
        if not changed and now - self._state_written_at < min_interval_s:
            return
        if self.full_refresh_interval_s <= 0:
            return  # this catalog does not follow the journal: it has no point of it to vouch for
        confirmed = {ns: (digest, at) for ns, (digest, at) in self._confirmed.items() if at is not None}
        if self._namespaces_with_documents(cur) - confirmed.keys():
            return
        state = catalog_index.IndexState(catalog_index.STATE_VERSION, {
            ns: catalog_index.IndexedNamespace(count, str(digest), at)
            for ns, ((count, digest), at) in sorted(confirmed.items())
        })  # fmt: skip
        try:
            self.storage.put(layout.CATALOG_INDEX_STATE_KEY, catalog_index.encode_state(state), {"kind": "catalog"})
        except StorageError as exc:
            log.warning("could not write %s (trying again in %.0f s): %s", layout.CATALOG_INDEX_STATE_KEY,
                        min_interval_s, exc)  # fmt: skip
        else:
            changed.append(layout.CATALOG_INDEX_STATE_KEY)
        self._state_written_at = now

    @staticmethod
    def _namespaces_with_documents(cur: duckdb.DuckDBPyConnection) -> set[str]:
        return {namespace for (namespace,) in cur.execute("SELECT DISTINCT namespace FROM documents").fetchall()}

    @staticmethod
    def _documents_of(
        cur: duckdb.DuckDBPyConnection, namespaces: Iterable[str]
    ) -> dict[str, list[catalog_index.IndexedDocument]]:
        """The documents as read (those a failed read left without bytes are not indexed), by namespace."""
        found: dict[str, list[catalog_index.IndexedDocument]] = {}
        rows = cur.execute(
            "SELECT namespace, key, size, mtime_ns, data FROM documents "
            "WHERE list_contains(?, namespace) AND data IS NOT NULL",
            [sorted(namespaces)],
        ).fetchall()
        for namespace, key, size, mtime_ns, data in rows:
            found.setdefault(namespace, []).append(catalog_index.IndexedDocument(key, size, mtime_ns, data))
        return found

    # -- queries ---------------------------------------------------------------------------------

    def list_sessions(self, query: SessionQuery) -> tuple[int, list[dict[str, Any]]]:
        """(how many sessions match, the requested page of them)."""
        where, params = _where(query)
        order = _order_by(query.sort)
        limit, offset = _page(query)
        # One transaction: the total and the page come from the same state even mid-refresh. The page's row ids
        # are found first and its rows fetched after: sorting the rows themselves (a kilobyte and a half each)
        # made a page at offset 50,000 of 100,000 sessions take 100 ms instead of 13.
        with closing(self._cursor()) as cur, transaction(cur):
            total = cur.execute(f"SELECT count(*) FROM sessions WHERE {where}", params).fetchone()
            ids = [row[0] for row in cur.execute(f"SELECT rowid FROM sessions WHERE {where} ORDER BY {order} "
                                                 "LIMIT ? OFFSET ?", [*params, limit, offset]).fetchall()]  # fmt: skip
            found = dict(cur.execute("SELECT rowid, row_json FROM sessions WHERE rowid = ANY(?::BIGINT[])", [ids])
                         .fetchall()) if ids else {}  # fmt: skip
        return (total[0] if total else 0), [_ROW_DECODER.decode(found[row_id]) for row_id in ids]

    def rows_by_status(self, statuses: Sequence[str], columns: Sequence[str]) -> list[dict[str, Any]]:
        """These columns of every session in these statuses, newest first (for passes over the archive:
        plain columns, not the whole row, are what keeps a pass over 10,000 sessions cheap)."""
        unknown = set(columns) - set(PUBLIC_COLUMNS)
        if unknown:
            raise ValueError(f"not columns of the catalog: {sorted(unknown)}")
        selected = ", ".join(columns)
        with closing(self._cursor()) as cur:
            result = cur.execute(
                f"SELECT {selected} FROM sessions WHERE list_contains(?, status) "
                "ORDER BY start_time_ms DESC NULLS LAST, path",
                [list(statuses)],
            )
            return [dict(zip(columns, row, strict=True)) for row in result.fetchall()]

    def get(self, namespace: str, cluster: str, session: str) -> dict[str, Any] | None:
        """One session's row, or None if the archive has no such session."""
        with closing(self._cursor()) as cur:
            # By the path, which is stored uncompressed: three compressed columns took four times longer at
            # 100,000 sessions, and every request naming a session asks.
            row = cur.execute("SELECT row_json FROM sessions WHERE path = ?", [f"{namespace}/{cluster}/{session}"]
                              ).fetchone()  # fmt: skip
        return _ROW_DECODER.decode(row[0]) if row is not None else None

    def public_schema(self) -> pa.Schema:
        """The typed columns of a listed row: what a list of no sessions still has (an SQL view needs them)."""
        with closing(self._cursor()) as cur:
            return cur.sql(f"SELECT {', '.join(PUBLIC_COLUMNS)} FROM sessions LIMIT 0").to_arrow_table().schema

    def namespaces(self) -> set[str]:
        """Every namespace that has a session."""
        with closing(self._cursor()) as cur:
            return {namespace for (namespace,) in cur.execute("SELECT DISTINCT namespace FROM sessions").fetchall()}

    def paths(self) -> frozenset[str]:
        """Every session that exists ("namespace/cluster/session"): what a cache may keep. As the last refresh
        left them (the server asks after every refresh and every put into the job index)."""
        known = self._paths
        if known is not None:
            return known
        with closing(self._cursor()) as cur:
            return self._session_paths(cur)

    def withheld(self, kind: str) -> set[str]:
        """Sessions whose objects of this kind no reader may read: deleted ones, and those where the kind
        expired (its objects are going, and a listing may catch them half gone)."""
        with closing(self._cursor()) as cur:
            rows = cur.execute(
                "SELECT path FROM retentions WHERE deleted OR list_contains(expired_kinds, ?)", [kind]
            ).fetchall()
        return {path for (path,) in rows}


@contextmanager
def _checkpointed_once(cur: duckdb.DuckDBPyConnection, first: bool) -> Iterator[None]:
    """For a first load, DuckDB's file written once at its end rather than at every 16 MB of its log: a new
    replica's load of 100,000 sessions into its file took 62 s, 47 s so (the log grows meanwhile, on the cache
    volume, to about the file's size)."""
    if not first:
        yield
        return
    cur.execute("SET checkpoint_threshold = '64GB'")
    try:
        yield
    finally:
        cur.execute("RESET checkpoint_threshold")
        # Not checkpointed now (another write under way): DuckDB does it at its next threshold.
        with suppress(duckdb.Error):
            cur.execute("CHECKPOINT")


def _index_digest(docs: Sequence[catalog_index.IndexedDocument]) -> tuple[int, int]:
    """(count, hash) of documents' keys and listed versions: whether an index object would change. The same
    inputs give the same digest in every process (unlike Python's hash), as the index read back must compare."""
    total = 0
    for doc in docs:
        entry = f"{doc.key}\0{doc.size}\0{doc.mtime_ns}".encode()
        total ^= int.from_bytes(hashlib.blake2b(entry, digest_size=8).digest(), "big")
    return len(docs), total


# -- documents to rows -------------------------------------------------------------------------------


def _parse_session_key(key: str) -> _DocRef | None:
    """Which session document a key under sessions/ is, or None for anything else."""
    bits = key.split("/")
    if bits[0] != "sessions" or len(bits) not in (5, 6):
        return None
    try:
        ref = layout.SessionRef(bits[1], bits[2], bits[3])
        if len(bits) == 6:
            if bits[4] != "nodes" or not bits[5].endswith(".json"):
                return None
            return _DocRef(key, ref, "node", layout.check_name("node", bits[5].removesuffix(".json")))
    except layout.InvalidName:
        return None
    if bits[4] == "manifest.json":
        return _DocRef(key, ref, "manifest")
    if bits[4] == "closed.json":
        return _DocRef(key, ref, "closed")
    if bits[4] == "retention.json":
        return _DocRef(key, ref, "retention")
    return None


def _decode_document(doc: _DocRef, data: bytes) -> dict[str, Any]:
    """The table row of a session document; msgspec errors if it is not one."""
    base = {"key": doc.key, "path": doc.ref.path}
    if doc.kind == "manifest":
        return base | _manifest_row(documents.decode(data, documents.Manifest))
    if doc.kind == "node":
        return base | _marker_row(doc, documents.decode(data, documents.NodeMarker))
    if doc.kind == "retention":
        return base | _retention_row(documents.decode(data, documents.Retention))
    closed = documents.decode(data, documents.Closed)
    return base | {"closed_at_ms": closed.closed_at_ms, "closed_by": closed.closed_by, "reason": closed.reason}


def _manifest_row(manifest: documents.Manifest) -> dict[str, Any]:
    k8s = manifest.kubernetes
    owner_kind, owner_name = manifest.owner_of()
    return {
        "start_time_ms": manifest.start_time_ms,
        "ray_version": manifest.ray_version,
        "head_node": manifest.head_node,
        "head_ray_node_id": manifest.head_ray_node_id,
        "owner_kind": owner_kind,
        "owner_name": owner_name,
        # JSON text rather than a MAP: it reaches Python an order of magnitude faster.
        "labels": msgspec.json.encode(manifest.labels).decode(),
        "label_terms": _label_terms(manifest.labels),
        "pod": k8s.pod,
        "raycluster": k8s.raycluster,
        "rayjob": k8s.rayjob,
        "queue": k8s.queue,
        "priority_class": k8s.priority_class,
        "annotations": msgspec.json.encode(k8s.pod_annotations).decode(),
        "collector_version": manifest.collector_version,
        "schema_version": manifest.schema_version,
    }


def _label_terms(labels: dict[str, str]) -> list[str]:
    """Each label as "key=value" and as a bare "key": one list membership test answers either filter."""
    return [f"{key}={value}" for key, value in labels.items()] + list(labels)


def _marker_row(doc: _DocRef, marker: documents.NodeMarker) -> dict[str, Any]:
    return {
        # The key names the node; a marker copied under another name must not count twice as one node.
        "node": doc.node,
        "role": marker.role,
        "last_heartbeat_ms": marker.last_heartbeat_ms,
        "started_at_ms": marker.started_at_ms,
        "final": marker.final,
        "ray_node_id": marker.ray_node_id,
        "hostname": marker.hostname,
        "events_uploaded": marker.events_uploaded,
        "parts_uploaded": marker.parts_uploaded,
        "events_quarantined": marker.events_quarantined,
        "spool_bytes": marker.spool_bytes,
    }


def _retention_row(retention: documents.Retention) -> dict[str, Any]:
    expired = {kind: msgspec.structs.asdict(decided) for kind, decided in sorted(retention.expired.items())}
    return {
        "deleted": retention.deleted is not None,
        "expired": msgspec.json.encode(expired).decode(),
        "expired_kinds": list(expired),
    }


def _listing_row(item: _Fetched) -> dict[str, Any]:
    """The `documents` row: where the document is, what the listing said of it, why it could not be read."""
    ref = item.doc.ref
    return {
        "key": item.doc.key, "path": ref.path, "namespace": ref.namespace, "cluster": ref.cluster,
        "session": ref.session, "kind": item.doc.kind, "size": item.info.size, "mtime_ns": item.info.mtime_ns,
        "error": item.error, "data": item.data,
    }  # fmt: skip


def _insert(cur: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    if not rows:
        return
    with registered(cur, "_incoming", pa.Table.from_pylist(rows, schema=schema)):
        cur.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming")


# -- queries to SQL ----------------------------------------------------------------------------------


def _where(query: SessionQuery) -> tuple[str, list[Any]]:
    """The WHERE clause of a query, with its parameters; ValueError for a filter that cannot hold."""
    clauses: list[str] = []
    params: list[Any] = []

    def add(clause: str, *values: Any) -> None:
        clauses.append(clause)
        params.extend(values)

    for column in ("namespace", "cluster", "queue"):
        value = getattr(query, column)
        if value is not None:
            add(f"{column} = ?", value)
    if query.namespaces is not None:
        add("list_contains(?, namespace)", sorted(query.namespaces))
    if query.owner is not None:
        kind, sep, name = query.owner.partition("/")
        if sep:
            add("lower(owner_kind) = lower(?) AND owner_name = ?", kind, name)
        else:
            add("owner_name = ?", query.owner)
    for term in _label_filters(query.labels):
        add("list_contains(label_terms, ?)", term)
    if query.status is not None:
        if query.status not in STATUSES:
            raise ValueError(f"invalid status {query.status!r}: use one of {', '.join(STATUSES)}")
        add("status = ?", query.status)
    if query.started_after_ms is not None:
        add("start_time_ms >= ?", int(query.started_after_ms))
    if query.started_before_ms is not None:
        add("start_time_ms < ?", int(query.started_before_ms))
    if query.text:
        add("contains(search_text, ?)", query.text.lower())
    return (" AND ".join(clauses) or "true"), params


def _label_filters(labels: Sequence[str] | str) -> Iterator[str]:
    if isinstance(labels, str):
        # A lone string would otherwise be taken letter by letter.
        labels = [labels]
    for label in labels:
        key, _, _ = label.partition("=")
        if not key.strip():
            raise ValueError(f"invalid label filter {label!r}: use key=value, or key for 'has this label'")
        yield label


def _order_by(sort: str | None) -> str:
    """ORDER BY for a sort parameter; only allow-listed column names ever reach the SQL."""
    sort = sort or DEFAULT_SORT
    column, descending = (sort[1:], True) if sort.startswith("-") else (sort, False)
    if column not in SORTABLE_COLUMNS:
        raise ValueError(
            f"invalid sort {sort!r}: use one of {', '.join(sorted(SORTABLE_COLUMNS))}, with '-' first for descending"
        )
    # Ties broken by the session's path so that paging never repeats or skips a row.
    return f"{column} {'DESC' if descending else 'ASC'} NULLS LAST, path ASC"


def _page(query: SessionQuery) -> tuple[int, int]:
    if not 1 <= query.limit <= MAX_LIMIT:
        raise ValueError(f"invalid limit {query.limit}: use 1 to {MAX_LIMIT}")
    if not 0 <= query.offset <= MAX_OFFSET:
        raise ValueError(f"invalid offset {query.offset}: use 0 to {MAX_OFFSET}")
    return query.limit, query.offset
