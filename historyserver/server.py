"""The history server's parts, assembled: the catalog (what exists), the session cache (what is open),
and the job index (every session's jobs, to query across sessions).

Routers reach everything through `HistoryServer`, so each part can change alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from archive import documents, layout
from archive.storage import ObjectNotFound, Storage, StorageError

from .access import EVERYONE, Viewer, unknown_session
from .answers import AnswerCache
from .catalog import STATUSES, Catalog, RefreshStats, SessionQuery
from .derivations import Derivations
from .errors import BadRequest, NotFound
from .jobindex import OWNER_COLUMNS, Entry, Indexed, JobIndex
from .jobobjects import JobIndexObjects
from .maintenance import Maintenance, MaintenanceSettings
from .readiness import CatalogLoad, wait_until_serving
from .reconstruct import SessionEnd
from .retention import expiries
from .sessions import OpenSession, SessionCache
from .sqlpool import SqlPool
from .storehealth import StoreHealth, WatchedStorage, describe

log = logging.getLogger(__name__)

# The catalog's file under --cache-dir (historyserver.catalog): a restart reads it instead of the archive.
CATALOG_FILE = "catalog.duckdb"
# The job index's, likewise: a restart indexes no session it already has (historyserver.jobindex).
JOBS_FILE = "jobs.duckdb"
# The job index reads this many sessions' snapshots at once, and commits this many together.
INDEX_READERS = 8
INDEX_BATCH = 500
# Sessions from the job index objects are committed this many together: they cost no reads, and each commit
# to the file costs about as much as 500 sessions' rows.
OBJECT_BATCH = 5000
# What the job index needs of a session's catalog row: its name, how it ended, who ran it.
INDEX_COLUMNS = ("namespace", "cluster", "session", "status", "end_time_ms", "closed_reason", "expired_kinds",
                 *OWNER_COLUMNS)  # fmt: skip


@dataclass(frozen=True)
class ServerSettings:
    cache_dir: Path = Path("/tmp/ray-history-cache")
    refresh_interval: float = 10.0
    heartbeat_timeout: float = 90.0
    max_open_sessions: int = 8
    sql_timeout: float = 10.0
    sql_max_rows: int = 10_000
    # Index the jobs of every ended session in the background, deriving snapshots no replica has written.
    index_jobs: bool = True
    # The catalog kept in cache_dir/catalog.duckdb, so a restart serves it at once and then refreshes; and each
    # namespace's documents published as archive index objects (catalog/{ns}.parquet, at most every
    # catalog_index_interval seconds), from which a replica with an empty cache starts. None: never published.
    # The job index likewise: cache_dir/jobs.duckdb, and jobindex/{ns}.parquet (historyserver.jobobjects).
    keep_catalog: bool = True
    catalog_index_interval: float | None = 300.0
    # A refresh lists all of sessions/ this often (and at a cold start); the others read the archive's change
    # journal and list only the sessions it names (historyserver.catalog). 0: every refresh lists everything.
    full_refresh_interval: float = 3600.0
    # Read the catalog the first time in the background, the port open meanwhile (`ray-history serve`); else
    # start() returns once it is read, as embedded uses and tests want.
    load_in_background: bool = False
    # Where the port is, with load_in_background: the loops begin once the app answers there (5 s at most), so
    # that reading the catalog does not take the CPU from the app's own start.
    listen: tuple[str, int] | None = None
    # Encoded answers kept for repeated requests (historyserver.answers), in bytes across every session.
    answer_cache_bytes: int = 64 * 1024 * 1024
    # Retention and compaction run by the server itself, and the usage gauges (historyserver.maintenance).
    maintenance: MaintenanceSettings = field(default_factory=MaintenanceSettings)
    # Users' SQL (historyserver.sqlpool): queries at once, each in a worker process of this much memory (DuckDB
    # gets three quarters) and this many DuckDB threads; a result over sql_max_bytes is refused. A few more wait
    # up to sql_queue_wait_s, the rest are answered 429.
    sql_concurrency: int = 2
    sql_memory_bytes: int = 512 * 1024 * 1024
    sql_threads: int = 1
    sql_max_bytes: int = 16 * 1024 * 1024
    sql_queue: int = 8
    sql_queue_wait_s: float = 5.0
    # Sessions derived at once (first opens replaying raw events), and the memory they may take together
    # (historyserver.derivations); a first open waits up to derive_wait_s for its turn, then is answered 503.
    max_derivations: int = 2
    derive_memory_bytes: int = 2 * 1024 * 1024 * 1024
    derive_wait_s: float = 5.0


class HistoryServer:
    def __init__(self, storage: Storage, settings: ServerSettings) -> None:
        # Every use of the store goes through one watcher, so that one place knows whether the store answers.
        self.health = StoreHealth(describe(storage))
        self.storage = WatchedStorage(storage, self.health)
        self.settings = settings
        self.answers = AnswerCache(settings.answer_cache_bytes)
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        catalog_file = settings.cache_dir / CATALOG_FILE if settings.keep_catalog else None
        self.catalog = Catalog(self.storage, catalog_file, settings.heartbeat_timeout, use_index=True,
                               full_refresh_interval_s=settings.full_refresh_interval)  # fmt: skip
        self.sessions = SessionCache(self.storage, settings.cache_dir, settings.max_open_sessions)
        self.jobs = JobIndex(settings.cache_dir / JOBS_FILE if settings.keep_catalog else None, self.storage.uri)
        self.job_objects = JobIndexObjects(self.storage, self.jobs)
        self._job_objects_read = False  # a replica whose job index is empty reads the archive's objects once
        self.maintenance = Maintenance(self.storage, settings.maintenance)
        self.sql = SqlPool(settings.sql_concurrency, settings.sql_memory_bytes, settings.sql_threads,
                           settings.sql_max_bytes, settings.sql_queue, settings.sql_queue_wait_s)  # fmt: skip
        self.sessions.snapshots.derivations = Derivations(settings.max_derivations, settings.derive_memory_bytes,
                                                          settings.derive_wait_s, settings.cache_dir)  # fmt: skip
        self.to_index: set[str] = set()  # ended sessions the background pass has still to index (their paths)
        self._indexed_generation = -1  # the catalog's generation the last complete job index pass saw
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.load = CatalogLoad(self.storage, self.health, self._count_sessions, lambda: self.catalog.documents_listed,
                                lambda: self.catalog.documents_from_index)  # fmt: skip
        if self.catalog.restored:
            # What the last run knew is served at once; the refresh loop's first pass brings it up to date.
            self.load.restored()

    def start(self) -> None:
        """Read the catalog once, then keep it (and the job index) fresh in the background. With
        `load_in_background` the first read is the refresh loop's first pass, and the port opens meanwhile."""
        if not self.settings.load_in_background:
            if self.catalog.restored:
                self.refresh()
            else:
                self.load.run(self.refresh, partial_ok=True)
        # (name, work, whether it has just been done): a restored catalog is refreshed at once in the background.
        refreshed = self.ready and not (self.catalog.restored and self.settings.load_in_background)
        loops: list[tuple[str, Callable[[], object], bool]] = [("catalog-refresh", self._refresh_catalog, refreshed)]
        if self.settings.index_jobs:
            loops.append(("job-index", self.index_ended_sessions, False))
        for name, work, done in loops:
            thread = threading.Thread(target=self._every_interval, args=(name, work, done), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        # Its own thread: a pass can take minutes on a big archive, and must not hold the refresh back.
        # After the catalog's first load: its usage listing would list sessions/ a second time meanwhile.
        thread = threading.Thread(target=self.maintenance.loop, args=(self._stop, self.load.loaded), name="maintenance",
                                  daemon=True)  # fmt: skip
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self.sql.close()

    @property
    def ready(self) -> bool:
        """Whether the catalog has been read once: until then, what needs it answers 503."""
        return self.load.done

    def readiness(self) -> dict[str, Any]:
        """What /readyz answers: whether the catalog is usable (why not, how far its load is), and the store's state."""
        answer: dict[str, Any] = {"ready": self.ready}
        if not self.ready:
            answer["reason"] = self.load.reason()
        return answer | {"catalog": self.load.report(), "store": self.health.report()}

    def _refresh_catalog(self) -> None:
        """The refresh loop's work; until the first load has read every session document, that load again."""
        if self.ready:
            self.refresh()
        else:
            self.load.run(self.refresh)

    def _count_sessions(self) -> int:
        return self.catalog.list_sessions(SessionQuery(limit=1))[0]

    def refresh(self) -> RefreshStats:
        """Refresh the catalog, then forget what no longer exists: a session retention deleted is hidden by
        the catalog at once, and here closed in the cache and taken out of the job index."""
        stats = self.catalog.refresh()
        self._forget_gone(self.catalog.paths())
        if self.settings.catalog_index_interval is not None:
            self.catalog.publish_index(self.settings.catalog_index_interval)
        return stats

    def _forget_gone(self, existing: AbstractSet[str]) -> None:
        self.sessions.keep_only(existing)
        self.jobs.forget(self.jobs.paths() - existing)

    def _every_interval(self, name: str, work: Callable[[], object], done: bool) -> None:
        if self.settings.load_in_background and self.settings.listen is not None:
            wait_until_serving(*self.settings.listen)
        if done and self._stop.wait(self.settings.refresh_interval):
            return
        while True:
            try:
                work()
            except StorageError as exc:
                # StoreHealth logs an outage once (and other store errors once a minute): no traceback per pass.
                log.debug("%s failed; trying again in %.0f s: %s", name, self.settings.refresh_interval, exc)
            except Exception:
                log.exception("%s failed; trying again in %.0f s", name, self.settings.refresh_interval)
            if self._stop.wait(self.settings.refresh_interval):
                return

    def index_ended_sessions(self) -> int:
        """Put the jobs of every ended session not yet indexed into the job index, newest first; how many.

        Sessions with a written-back snapshot are read first, several at once (a listing and two small
        reads each); then those without are derived, one at a time (and written back), so the first
        person to open one does not wait.
        """
        # Its loop starts with the server: nothing to index until the catalog's first load is done.
        while not self.load.loaded.wait(1.0):
            if self._stop.is_set():
                return 0
        generation = self.catalog.generation
        if generation == self._indexed_generation:
            # No session changed since a pass that left nothing to do: at 100,000 sessions reading them all again
            # took a few tenths of a second of the server's CPU every pass.
            return 0
        ended = self.catalog.rows_by_status(("closed", "incomplete"), INDEX_COLUMNS)
        everywhere = self.catalog.rows_by_status(STATUSES, ("namespace", "cluster", "session"))
        self.jobs.forget(self.jobs.paths() - {row_path(row) for row in everywhere})
        todo = [row for row in ended if not self._is_indexed(row)]
        self.to_index = {row_path(row) for row in todo}
        done = 0
        if todo and not self._job_objects_read and self.jobs.sessions_indexed() == 0:
            todo, done = self._index_from_objects(todo)
        to_derive: list[dict[str, Any]] = []
        cut_short = False
        with ThreadPoolExecutor(max_workers=INDEX_READERS) as pool:
            for start in range(0, len(todo), INDEX_BATCH):
                if self._stop.is_set() or not self.health.reachable:  # an outage: the next pass goes on
                    return done
                batch = todo[start : start + INDEX_BATCH]
                found = list(pool.map(lambda row: self._jobs_entry(row, derive=False), batch))
                to_derive += [row for row, entry in zip(batch, found, strict=True) if entry is None]
                done += self._add_to_index([entry for entry in found if entry])
        for row in to_derive:
            if self._stop.is_set() or not self.health.reachable:
                cut_short = True
                break
            done += self._add_to_index([self._jobs_entry(row, derive=True)])
        if todo:
            log.info("job index: %d ended sessions indexed (%d derived), %d in all", done, len(to_derive),
                     self.jobs.sessions_indexed())  # fmt: skip
        # After a whole pass only: a replica still indexing would write objects that lack what it has yet to do.
        if not cut_short and self.settings.catalog_index_interval is not None:
            self.job_objects.publish(self.settings.catalog_index_interval)
        if not cut_short and not self.to_index:
            self._indexed_generation = generation
        return done

    def _index_from_objects(self, todo: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """Index what the archive's job index objects hold (a few reads instead of three per session), then
        (the rows still to do, how many were indexed). A session's rows are taken only if they came from the
        session as the catalog says it ended; `todo` holds only sessions the catalog has, so one that retention
        deleted is never indexed again from an object that still names it."""
        held = self.job_objects.read()
        self._job_objects_read = True
        entries: list[Entry | None] = []
        for row in todo:
            found = held.get(row_path(row))
            end = session_end(row)
            if found is not None and (found.closed, found.end_ns) == (end.closed, end.end_ns):
                ref = layout.SessionRef(row["namespace"], row["cluster"], row["session"])
                entries.append(Entry(ref, row, found.jobs, Indexed(found.parts, found.closed, found.end_ns)))
        done = sum(self._add_to_index(entries[start : start + OBJECT_BATCH])
                   for start in range(0, len(entries), OBJECT_BATCH))  # fmt: skip
        return [row for row in todo if not self._is_indexed(row)], done

    def _jobs_entry(self, row: dict[str, Any], derive: bool) -> Entry | None:
        ref = layout.SessionRef(row["namespace"], row["cluster"], row["session"])
        end = session_end(row)
        try:
            found = self.sessions.snapshots.table(ref, end, "jobs", derive=derive, expired=row["expired_kinds"])
        except StorageError as exc:
            # The store's fault, which StoreHealth logs (an outage once): no traceback per session.
            log.debug("could not index the jobs of %s (trying again next pass): %s", ref.path, exc)
            return None
        except Exception:
            log.exception("could not index the jobs of %s; trying again next pass", ref.path)
            return None
        if found is None:
            return None
        table, parts = found
        return Entry(ref, row, table, Indexed(parts, end.closed, end.end_ns))

    def _add_to_index(self, entries: list[Entry | None]) -> int:
        ready = [entry for entry in entries if entry is not None]
        if ready:
            self._put_jobs(ready)
            self.to_index -= {entry.ref.path for entry in ready}
        return len(ready)

    def _put_jobs(self, entries: list[Entry]) -> None:
        """Index these sessions' jobs, then take out any the catalog deleted meanwhile: a refresh that
        forgot them before this put would otherwise leave them searchable."""
        self.jobs.put(entries)
        gone = {entry.ref.path for entry in entries} - self.catalog.paths()
        if gone:
            self.jobs.forget(gone)

    def _is_indexed(self, row: dict[str, Any]) -> bool:
        known = self.jobs.indexed(row_path(row))
        end = session_end(row)
        return known is not None and (known.closed, known.end_ns) == (end.closed, end.end_ns)

    def vanished(self, namespace: str, cluster: str, session: str) -> tuple[int, str]:
        """(status, message) for a request whose files went away while it read them: retention deleted them
        sooner than its grace let the catalog know, or compaction replaced parts an open session still named.
        The session is closed (the next request lists its objects again); a deleted one is answered as
        unknown, anything else is worth trying again."""
        ref = layout.SessionRef(namespace, cluster, session)
        self.sessions.drop(ref)
        if _deleted(self.storage, ref):
            return 404, f"no session {ref.path} in the archive"
        return 503, f"objects of session {ref.path} changed in the archive while they were read: try again"

    @property
    def sessions_to_index(self) -> int:
        return len(self.to_index)

    def pending_for(self, namespaces: frozenset[str] | None) -> int:
        """Ended sessions of these namespaces (None: all) the background pass has still to index."""
        pending = set(self.to_index)
        return len(pending) if namespaces is None else sum(path.split("/", 1)[0] in namespaces for path in pending)

    def namespaces_of(self, viewer: Viewer) -> frozenset[str] | None:
        """The namespaces of the archive `viewer` may see; None when they may see every one (nothing to filter)."""
        return None if viewer.sees_all else viewer.visible(self.catalog.namespaces())

    def session_row(self, namespace: str, cluster: str, session: str, viewer: Viewer = EVERYONE) -> dict[str, Any]:
        """The session's catalog row. A session of a namespace `viewer` may not see is not found, as one the
        archive does not have, with the same message."""
        try:
            layout.SessionRef(namespace, cluster, session)
        except layout.InvalidName as exc:
            raise BadRequest(str(exc)) from exc
        row = self.catalog.get(namespace, cluster, session) if viewer.allows(namespace) else None
        if row is None:
            raise NotFound(unknown_session(namespace, cluster, session))
        return row

    def open(self, namespace: str, cluster: str, session: str, viewer: Viewer = EVERYONE) -> OpenSession:
        """The session, opened (its snapshot derived on first open)."""
        row = self.session_row(namespace, cluster, session, viewer)
        ref = layout.SessionRef(namespace, cluster, session)
        opened = self.sessions.get(ref, session_end(row), expiries(row))
        manifest = opened.snapshot.manifest
        source = Indexed(manifest.parts, manifest.closed, manifest.end_ns)
        if self.jobs.indexed(ref.path) != source:
            self._put_jobs([Entry(ref, row, opened.cursor().sql("SELECT * FROM jobs").to_arrow_table(), source)])
        return opened


def _deleted(storage: Storage, ref: layout.SessionRef) -> bool:
    """Whether the session's retention document says it is deleted (read now, not as the catalog last saw it)."""
    try:
        retention = documents.decode(storage.get(layout.retention_key(ref)), documents.Retention)
    except (ObjectNotFound, StorageError, msgspec.DecodeError, msgspec.ValidationError):
        return False
    return retention.deleted is not None


def session_end(row: dict[str, Any]) -> SessionEnd:
    """How the catalog says the session ended: closed, or silent for too long (treated as ended)."""
    if row["status"] == "running":
        return SessionEnd(closed=False, end_ns=None, reason=None)
    end_ms = row.get("end_time_ms")
    reason = row.get("closed_reason") or "the collectors stopped reporting: the cluster is presumed gone"
    return SessionEnd(closed=True, end_ns=end_ms * 1_000_000 if end_ms is not None else None, reason=reason)


def row_path(row: dict[str, Any]) -> str:
    return f"{row['namespace']}/{row['cluster']}/{row['session']}"
