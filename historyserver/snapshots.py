"""A session's snapshot tables: read from the local cache, else from the archive, else derived.

Deriving replays every raw event of the session (seconds for a million tasks); it happens once per
set of raw parts. A closed session's tables are written back under `snapshots/`, so any replica
opens it without replay; a running session's stay in the local cache and are derived again when
new parts arrive. A server with a newer snapshot schema derives old snapshots again.

Opening derives the tables pages are made of; an on-demand table (the timeline's spans) is derived
when first asked for and then added to the snapshot, locally and in the archive.

Retention. A snapshot is never replaced by one derived from fewer parts: once the session's raw events
expired (`expired` names the kinds retention removes), or when the archive's snapshot was derived from more
events parts or bytes than are listed now, the archived snapshot is served whatever its fingerprint, and a
derivation from what is left is neither preferred to it nor written over it. Once the snapshot itself
expired, it is derived again and kept in the local cache only.

Whoever opens a session waits for the replay only: the tables are derived as DuckDB tables, in the
database the opened session then uses, and their Parquet files are written (locally, then to the
archive) by a writer thread. Until they are, every other use of that session's snapshot waits for
them (`wait_written`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from archive import documents, layout
from archive.parquet import table_to_parquet
from archive.parts import list_live, parts_fingerprint
from archive.schema import EVENTS, SNAPSHOT_SCHEMA_VERSION, SNAPSHOT_TABLES
from archive.storage import ObjectInfo, ObjectNotFound, Storage, StorageError

from .derivations import Derivations, being_prepared
from .limits import lower_priority
from .mirror import Mirror, read_parquet_sql, write_atomically
from .reconstruct import OPENING_TABLES, SessionEnd, create_snapshot_tables, snapshot_table

log = logging.getLogger(__name__)

# Where a derived snapshot's files go: the local cache and (closed sessions) the archive; the local cache
# only; or, for a table added to a snapshot that knows more than the parts left, this open only.
Persist = Literal["archive", "local", "none"]


@dataclass(frozen=True)
class Snapshot:
    """Local Parquet files of a session's snapshot tables, and how they were obtained."""

    tables: dict[str, Path]
    manifest: documents.SnapshotManifest
    source: str  # "cache", "archive" (read, no replay) or "derived" (replayed the raw events)
    # Only when just derived: the database holding the tables, whose files may still be being written.
    database: duckdb.DuckDBPyConnection | None = field(default=None, compare=False, repr=False)

    def detached(self) -> Snapshot:
        """This snapshot without its database: only its files."""
        return replace(self, database=None)


def derived_from_more(stored: str, listed: str) -> bool:
    """Whether a snapshot of fingerprint `stored` was derived from more events parts or bytes than `listed`
    holds: parts went away (expired, or deleted by a bucket rule), so the snapshot knows more than they do.
    False when either fingerprint is not `count:bytes:mtime` (nothing can be told)."""
    try:
        stored_count, stored_bytes = (int(value) for value in stored.split(":")[:2])
        listed_count, listed_bytes = (int(value) for value in listed.split(":")[:2])
    except ValueError:
        return False
    return stored_count > listed_count or stored_bytes > listed_bytes


def persist_for(expired: Collection[str]) -> Persist:
    """A derivation from the raw events may go to the archive unless retention took events (what is left is
    less than the archived snapshot knew) or the snapshot (its objects are being deleted)."""
    return "local" if {"events", "snapshots"} & set(expired) else "archive"


class SnapshotStore:
    def __init__(self, storage: Storage, mirror: Mirror, cache_dir: Path) -> None:
        self.storage = storage
        self.mirror = mirror
        self.cache_dir = cache_dir.resolve()
        self.derived = 0  # sessions replayed by this server (tests and /metrics read it)
        # How many derive at once, within what memory (the server sets its own from its settings).
        self.derivations = Derivations(cache_dir=cache_dir)
        self._locks: dict[layout.SessionRef, threading.Lock] = {}
        self._guard = threading.Lock()
        # At the background's priority, as derivations are (its encoders, threads it starts, inherit it).
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-writer",
                                          initializer=lower_priority)  # fmt: skip
        self._writing: dict[layout.SessionRef, Future[None]] = {}

    def wait_written(self, ref: layout.SessionRef | None = None) -> None:
        """Wait until the files of this session's (or every) derived snapshot are written."""
        with self._guard:
            pending = [future for key, future in self._writing.items() if ref is None or key == ref]
        for future in pending:
            future.result()

    def load(self, ref: layout.SessionRef, end: SessionEnd, expired: Collection[str] = ()) -> Snapshot:
        """The session's snapshot, derived only if neither the cache nor the archive has one to use.

        `expired`: the kinds retention removes from this session (see the module's docstring)."""
        with self._turn_of(ref):
            parts = self._parts(ref)
            wanted = parts_fingerprint(parts)
            # Once the raw events expired, the archive's snapshot comes first: the local copy may have been
            # derived from what was left of them.
            sources = (self._archived, self._cached) if "events" in expired else (self._cached, self._archived)
            for source in sources:
                found = source(ref, wanted, end, expired)
                if found is not None:
                    return found
            return self._derive(ref, parts, end, OPENING_TABLES, persist=persist_for(expired))

    def _cached(self, ref: layout.SessionRef, wanted: str, end: SessionEnd,
                expired: Collection[str]) -> Snapshot | None:  # fmt: skip
        return self._from_cache(ref, wanted, end)

    def _archived(self, ref: layout.SessionRef, wanted: str, end: SessionEnd,
                  expired: Collection[str]) -> Snapshot | None:  # fmt: skip
        stored = self._usable_archived(ref, wanted, end, expired)
        return self._from_archive(ref, wanted, end, stored) if stored is not None else None

    def with_table(self, ref: layout.SessionRef, end: SessionEnd, snapshot: Snapshot, name: str,
                   expired: Collection[str] = ()) -> Snapshot:  # fmt: skip
        """`snapshot` with an on-demand table added: derived now unless a replica has written it."""
        if name in snapshot.tables:
            return snapshot
        with self._turn_of(ref):
            parts = self._parts(ref)
            wanted = parts_fingerprint(parts)
            if "events" in expired or derived_from_more(snapshot.manifest.parts, wanted):
                # The snapshot knows more than the parts left: the table comes from what is left, for this
                # open only, and the snapshot stays as it is in the cache and in the archive.
                derived = self._derive(ref, parts, end, (name,), onto=snapshot, persist="none")
                self.wait_written(ref)
                return derived.detached()
            local = self._from_cache(ref, wanted, end)
            if local is not None and name in local.tables:
                return local
            stored = None if "snapshots" in expired else self._archived_manifest(ref, wanted, end)
            if stored is not None and name in stored[0].tables:  # another replica derived it
                fetched = self._from_archive(ref, wanted, end, stored)
                if fetched is not None:
                    return fetched
            persist = persist_for(expired)
            if wanted != snapshot.manifest.parts:  # new parts since it was opened: all of it again
                derived = self._derive(ref, parts, end, (*OPENING_TABLES, name), persist=persist)
            else:
                derived = self._derive(ref, parts, end, (name,), onto=snapshot, onto_archived=stored is not None,
                                       persist=persist)  # fmt: skip
        # An on-demand table is read from its file.
        self.wait_written(ref)
        return derived.detached()

    def table(self, ref: layout.SessionRef, end: SessionEnd, name: str, derive: bool = True,
              expired: Collection[str] = ()) -> tuple[pa.Table, str] | None:  # fmt: skip
        """One snapshot table and its snapshot's parts fingerprint, without fetching the other tables when
        the archive has a snapshot to use (as `load` chooses it); derived (and written back) when nobody has
        one, or None then if not `derive`. `name` is one of the tables opening derives."""
        if name not in OPENING_TABLES:
            raise ValueError(f"{name} is derived on demand, not read alone")
        with self._lock_of(ref):
            parts = self._parts(ref)
            wanted = parts_fingerprint(parts)
            if not parts and "events" not in expired:  # nothing was ever archived: nothing to derive or write back
                return SNAPSHOT_TABLES[name].empty_table(), wanted
            local = self._from_cache(ref, wanted, end)
            if local is not None and name in local.tables and "events" not in expired:
                return pq.read_table(local.tables[name]), wanted
            stored = self._usable_archived(ref, wanted, end, expired)
            if stored is not None and name in stored[0].tables:
                try:
                    table = pq.read_table(pa.BufferReader(self.storage.get(layout.snapshot_key(ref, name))))
                    return table, stored[0].parts
                except (StorageError, pa.ArrowInvalid) as exc:
                    log.warning("the archived %s of %s is unreadable (%s); deriving it again", name, ref.path, exc)
            if local is not None and name in local.tables:  # the raw events expired and the archive has none
                return pq.read_table(local.tables[name]), wanted
            if not derive:
                return None
            database = self._derive(ref, parts, end, OPENING_TABLES, persist=persist_for(expired),
                                    patient=True).database  # fmt: skip
            return snapshot_table(database.cursor(), name), wanted  # type: ignore[union-attr]

    def _parts(self, ref: layout.SessionRef) -> list[ObjectInfo]:
        # Called first under the session's lock: a snapshot of it still being written is finished first,
        # so the cache is seen as it will be, and nothing is derived twice.
        self.wait_written(ref)
        return list_live(self.storage, "events", ref)

    def _lock_of(self, ref: layout.SessionRef) -> threading.Lock:
        # One derivation per session at a time: two requests for a cold session wait for one replay.
        with self._guard:
            return self._locks.setdefault(ref, threading.Lock())

    @contextmanager
    def _turn_of(self, ref: layout.SessionRef) -> Iterator[None]:
        """The session's lock for a request: while another request derives the session (seconds), a request
        waits `derive_wait_s` at most, then is told the session is being prepared (503), rather than holding
        one of the server's request threads for the whole replay."""
        lock = self._lock_of(ref)
        if not lock.acquire(timeout=self.derivations.wait_s):
            raise being_prepared(ref, "another request is deriving it")
        try:
            yield
        finally:
            lock.release()

    def _local_dir(self, ref: layout.SessionRef) -> Path:
        return self.cache_dir / "snapshots" / ref.path

    def _is_current(self, manifest: documents.SnapshotManifest, wanted: str, end: SessionEnd) -> bool:
        return (
            manifest.schema_version == SNAPSHOT_SCHEMA_VERSION
            and manifest.parts == wanted
            and manifest.closed == end.closed
            and manifest.end_ns == end.end_ns
            and set(OPENING_TABLES) <= manifest.tables.keys()
        )

    def _from_cache(self, ref: layout.SessionRef, wanted: str, end: SessionEnd) -> Snapshot | None:
        directory = self._local_dir(ref)
        try:
            manifest = documents.decode((directory / "snapshot.json").read_bytes(), documents.SnapshotManifest)
        except (FileNotFoundError, msgspec.DecodeError):
            return None
        if not self._is_current(manifest, wanted, end):
            return None
        tables = {name: directory / f"{name}.parquet" for name in manifest.tables}
        if not all(path.exists() for path in tables.values()):
            return None
        return Snapshot(tables, manifest, "cache")

    def _archived_manifest(self, ref: layout.SessionRef, wanted: str, end: SessionEnd,
                           ) -> tuple[documents.SnapshotManifest, bytes] | None:  # fmt: skip
        """The archive's snapshot manifest (and its bytes) if it is current."""
        stored = self._stored_manifest(ref)
        return stored if stored is not None and self._is_current(stored[0], wanted, end) else None

    def _usable_archived(self, ref: layout.SessionRef, wanted: str, end: SessionEnd,
                         expired: Collection[str]) -> tuple[documents.SnapshotManifest, bytes] | None:  # fmt: skip
        """The archive's snapshot manifest to read rather than derive: a current one, or one kept whatever
        its fingerprint because it knows more than the parts left (the raw events expired, or it was derived
        from more parts or bytes). None once the snapshot itself expired: its objects are going."""
        if "snapshots" in expired:
            return None
        stored = self._stored_manifest(ref)
        if stored is None:
            return None
        manifest = stored[0]
        if self._is_current(manifest, wanted, end):
            return stored
        readable = manifest.schema_version == SNAPSHOT_SCHEMA_VERSION and set(OPENING_TABLES) <= manifest.tables.keys()
        knows_more = "events" in expired or derived_from_more(manifest.parts, wanted)
        if readable and knows_more:
            log.info("kept the archived snapshot of %s (derived from %s; the events parts now: %s)", ref.path,
                     manifest.parts, wanted)  # fmt: skip
            return stored
        return None

    def _stored_manifest(self, ref: layout.SessionRef) -> tuple[documents.SnapshotManifest, bytes] | None:
        """The archive's snapshot manifest and its bytes, whatever it was derived from."""
        try:
            data = self.storage.get(layout.snapshot_manifest_key(ref))
            return documents.decode(data, documents.SnapshotManifest), data
        except ObjectNotFound:
            return None
        except (StorageError, msgspec.DecodeError) as exc:
            log.warning("the archived snapshot of %s is unreadable (%s); deriving it again", ref.path, exc)
            return None

    def _from_archive(self, ref: layout.SessionRef, wanted: str, end: SessionEnd,
                      stored: tuple[documents.SnapshotManifest, bytes] | None = None) -> Snapshot | None:  # fmt: skip
        """The archive's current snapshot, fetched into the cache (`stored`: its manifest, if already read)."""
        stored = stored or self._archived_manifest(ref, wanted, end)
        if stored is None:
            return None
        manifest, data = stored
        directory = self._local_dir(ref)
        tables = {name: directory / f"{name}.parquet" for name in manifest.tables}
        if _same_bytes(directory / "snapshot.json", data) and all(path.exists() for path in tables.values()):
            # Fetched before: a snapshot kept whatever its fingerprint is never current, so it comes here at
            # every open, and its tables need not be fetched again.
            return Snapshot(tables, manifest, "cache")
        tables = {}
        try:
            for name in manifest.tables:
                path = directory / f"{name}.parquet"
                write_atomically(path, self.storage.get(layout.snapshot_key(ref, name)))
                tables[name] = path
        except StorageError as exc:
            log.warning("the archived snapshot of %s is incomplete (%s); deriving it again", ref.path, exc)
            return None
        write_atomically(directory / "snapshot.json", data)
        return Snapshot(tables, manifest, "archive")

    def _derive(self, ref: layout.SessionRef, parts: list[ObjectInfo], end: SessionEnd, names: tuple[str, ...],
                onto: Snapshot | None = None, onto_archived: bool = False, persist: Persist = "archive",
                patient: bool = False) -> Snapshot:  # fmt: skip
        """Replay the raw events into the named tables; `onto` a current snapshot they are added to
        (`onto_archived`: whose tables the archive already holds); `persist`: where the files go.

        Admitted by `derivations` first (Busy, a 503, when a request's turn does not come soon; `patient`: the
        background's waits), holding its share of the memory budget until its files are written."""
        started = time.perf_counter()
        paths = self.mirror.paths(parts)

        def replay(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
            if paths:
                con.execute(f"CREATE VIEW events AS SELECT * FROM {read_parquet_sql(paths)}")
            else:
                con.register("events", pa.table({name: [] for name in EVENTS.names}, schema=EVENTS))
            return create_snapshot_tables(con, end, names)

        con, rows, cost = self.derivations.replay(ref, parts, patient, replay)
        self.derived += 1
        kept = onto.manifest.tables if onto is not None else {}
        # A table added for this open only leaves the snapshot what it was (the job index and the cache
        # know it by its fingerprint).
        fingerprint = onto.manifest.parts if onto is not None and persist == "none" else parts_fingerprint(parts)
        manifest = documents.SnapshotManifest(
            schema_version=SNAPSHOT_SCHEMA_VERSION, parts=fingerprint, closed=end.closed,
            end_ns=end.end_ns, built_at_ms=time.time_ns() // 1_000_000, tables={**kept, **rows},
        )  # fmt: skip
        log.info("derived %s of %s from %d parts in %.1f s", ", ".join(names), ref.path, len(parts),
                 time.perf_counter() - started)  # fmt: skip
        upload_too = onto.tables if onto is not None and not onto_archived else {}
        # The writer reads the tables through a cursor of its own, made here: only one thread at a time
        # may make a cursor of a connection.
        writing = self._writer.submit(self._write, ref, con.cursor(), names, manifest, upload_too, persist)
        with self._guard:
            self._writing[ref] = writing
        writing.add_done_callback(lambda done: self._forget_write(ref, done))
        writing.add_done_callback(lambda _: self.derivations.leave(cost))
        directory = self._files_dir(ref, persist)
        tables = {**(onto.tables if onto is not None else {}), **{name: directory / f"{name}.parquet" for name in rows}}
        return Snapshot(tables, manifest, "derived", database=con)

    def _files_dir(self, ref: layout.SessionRef, persist: Persist) -> Path:
        # Files for one open only stay out of the cached snapshot's folder, whose manifest names its own.
        return self._local_dir(ref) / "transient" if persist == "none" else self._local_dir(ref)

    def _forget_write(self, ref: layout.SessionRef, done: Future[None]) -> None:
        with self._guard:
            if self._writing.get(ref) is done:
                del self._writing[ref]

    def _write(self, ref: layout.SessionRef, database: duckdb.DuckDBPyConnection, names: tuple[str, ...],
               manifest: documents.SnapshotManifest, upload_too: dict[str, Path],
               persist: Persist = "archive") -> None:  # fmt: skip
        """The writer thread's work: a derived snapshot's files in the cache, then (closed) in the archive.

        `upload_too`: tables of the snapshot this one adds to, which the archive does not hold yet.
        """
        try:
            started = time.perf_counter()
            encoded = encode_tables({name: snapshot_table(database, name) for name in names})
            directory = self._files_dir(ref, persist)
            for name, data in encoded.items():
                write_atomically(directory / f"{name}.parquet", data)
            if persist == "none":
                return
            # Last: the manifest is what makes the files count as the cached snapshot.
            write_atomically(directory / "snapshot.json", documents.encode(manifest))
            if manifest.closed and persist == "archive":
                extra = {name: path.read_bytes() for name, path in upload_too.items() if name not in encoded}
                if not self._write_back(ref, encoded | extra, manifest):
                    # The archive's snapshot knows more: the next open reads it rather than this local copy.
                    (directory / "snapshot.json").unlink(missing_ok=True)
            log.info("wrote the snapshot of %s in %.1f s", ref.path, time.perf_counter() - started)
        except Exception:
            # Nothing is lost: without its manifest the snapshot is derived again when next wanted.
            log.exception("could not write the snapshot of %s", ref.path)

    def _write_back(
        self, ref: layout.SessionRef, encoded: dict[str, bytes], manifest: documents.SnapshotManifest
    ) -> bool:
        """Put the snapshot in the archive, unless the archive's was derived from more events parts or bytes
        (parts went away since, or while, it was derived): that one is kept. False when kept."""
        stored = self._stored_manifest(ref)
        if stored is not None and derived_from_more(stored[0].parts, manifest.parts):
            log.warning("kept the archived snapshot of %s: derived from %s, more than this one (%s)", ref.path,
                        stored[0].parts, manifest.parts)  # fmt: skip
            return False
        # A read-only archive still serves: the snapshot then lives in this server's cache only.
        tags = layout.object_tags("snapshots", ref)
        try:
            for name, data in encoded.items():
                self.storage.put(layout.snapshot_key(ref, name), data, tags=tags)
            self.storage.put(layout.snapshot_manifest_key(ref), documents.encode(manifest), tags=tags)
        except StorageError as exc:
            log.warning("could not write the snapshot of %s back to the archive: %s", ref.path, exc)
        return True


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except OSError:
        return False


def encode_tables(tables: dict[str, pa.Table]) -> dict[str, bytes]:
    """Parquet of each table, encoded side by side (the encoder lets go of the GIL)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(tables, pool.map(table_to_parquet, tables.values()), strict=True))
