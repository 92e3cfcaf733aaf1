"""A session's snapshot tables: read from the local cache, else from the archive, else derived.

Deriving replays every raw event of the session (seconds for a million tasks); it happens once per
set of raw parts. A closed session's tables are written back under `snapshots/`, so any replica
opens it without replay; a running session's stay in the local cache and are derived again when
new parts arrive. A server with a newer snapshot schema derives old snapshots again.

Opening derives the tables pages are made of; an on-demand table (the timeline's spans) is derived
when first asked for and then added to the snapshot, locally and in the archive.

Whoever opens a session waits for the replay only: the tables are derived as DuckDB tables, in the
database the opened session then uses, and their Parquet files are written (locally, then to the
archive) by a writer thread. Until they are, every other use of that session's snapshot waits for
them (`wait_written`).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from archive import documents, layout
from archive.parquet import table_to_parquet
from archive.parts import list_live
from archive.schema import EVENTS, SNAPSHOT_SCHEMA_VERSION, SNAPSHOT_TABLES
from archive.storage import ObjectInfo, ObjectNotFound, Storage, StorageError

from .mirror import Mirror, read_parquet_sql, write_atomically
from .reconstruct import OPENING_TABLES, SessionEnd, create_snapshot_tables, snapshot_table

log = logging.getLogger(__name__)


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


def parts_fingerprint(parts: list[ObjectInfo]) -> str:
    """Changes whenever a part is added, replaced or removed (a re-upload changes size or mtime)."""
    newest = max((part.mtime_ns for part in parts), default=0)
    return f"{len(parts)}:{sum(part.size for part in parts)}:{newest}"


class SnapshotStore:
    def __init__(self, storage: Storage, mirror: Mirror, cache_dir: Path) -> None:
        self.storage = storage
        self.mirror = mirror
        self.cache_dir = cache_dir.resolve()
        self.derived = 0  # sessions replayed by this server (tests and /metrics read it)
        self._locks: dict[layout.SessionRef, threading.Lock] = {}
        self._guard = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-writer")
        self._writing: dict[layout.SessionRef, Future[None]] = {}

    def wait_written(self, ref: layout.SessionRef | None = None) -> None:
        """Wait until the files of this session's (or every) derived snapshot are written."""
        with self._guard:
            pending = [future for key, future in self._writing.items() if ref is None or key == ref]
        for future in pending:
            future.result()

    def load(self, ref: layout.SessionRef, end: SessionEnd) -> Snapshot:
        """The session's snapshot, derived only if neither the cache nor the archive has a current one."""
        with self._lock_of(ref):
            parts = self._parts(ref)
            wanted = parts_fingerprint(parts)
            local = self._from_cache(ref, wanted, end)
            if local is not None:
                return local
            stored = self._from_archive(ref, wanted, end)
            if stored is not None:
                return stored
            return self._derive(ref, parts, end, OPENING_TABLES)

    def with_table(self, ref: layout.SessionRef, end: SessionEnd, snapshot: Snapshot, name: str) -> Snapshot:
        """`snapshot` with an on-demand table added: derived now unless a replica has written it."""
        if name in snapshot.tables:
            return snapshot
        with self._lock_of(ref):
            parts = self._parts(ref)
            wanted = parts_fingerprint(parts)
            local = self._from_cache(ref, wanted, end)
            if local is not None and name in local.tables:
                return local
            stored = self._archived_manifest(ref, wanted, end)
            if stored is not None and name in stored[0].tables:  # another replica derived it
                fetched = self._from_archive(ref, wanted, end, stored)
                if fetched is not None:
                    return fetched
            if wanted != snapshot.manifest.parts:  # new parts since it was opened: all of it again
                derived = self._derive(ref, parts, end, (*OPENING_TABLES, name))
            else:
                derived = self._derive(ref, parts, end, (name,), onto=snapshot, onto_archived=stored is not None)
        # An on-demand table is read from its file.
        self.wait_written(ref)
        return derived.detached()

    def table(self, ref: layout.SessionRef, end: SessionEnd, name: str,
              derive: bool = True) -> tuple[pa.Table, str] | None:  # fmt: skip
        """One snapshot table and the parts' fingerprint, without fetching the other tables when the
        archive has a current snapshot; derived (and written back) when nobody has one, or None then
        if not `derive`. `name` is one of the tables opening derives."""
        if name not in OPENING_TABLES:
            raise ValueError(f"{name} is derived on demand, not read alone")
        with self._lock_of(ref):
            parts = self._parts(ref)
            wanted = parts_fingerprint(parts)
            if not parts:  # nothing was ever archived: nothing to derive or to write back
                return SNAPSHOT_TABLES[name].empty_table(), wanted
            local = self._from_cache(ref, wanted, end)
            if local is not None and name in local.tables:
                return pq.read_table(local.tables[name]), wanted
            stored = self._archived_manifest(ref, wanted, end)
            if stored is not None and name in stored[0].tables:
                try:
                    return pq.read_table(pa.BufferReader(self.storage.get(layout.snapshot_key(ref, name)))), wanted
                except (StorageError, pa.ArrowInvalid) as exc:
                    log.warning("the archived %s of %s is unreadable (%s); deriving it again", name, ref.path, exc)
            if not derive:
                return None
            database = self._derive(ref, parts, end, OPENING_TABLES).database
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
        try:
            data = self.storage.get(layout.snapshot_manifest_key(ref))
            manifest = documents.decode(data, documents.SnapshotManifest)
        except ObjectNotFound:
            return None
        except (StorageError, msgspec.DecodeError) as exc:
            log.warning("the archived snapshot of %s is unreadable (%s); deriving it again", ref.path, exc)
            return None
        return (manifest, data) if self._is_current(manifest, wanted, end) else None

    def _from_archive(self, ref: layout.SessionRef, wanted: str, end: SessionEnd,
                      stored: tuple[documents.SnapshotManifest, bytes] | None = None) -> Snapshot | None:  # fmt: skip
        """The archive's current snapshot, fetched into the cache (`stored`: its manifest, if already read)."""
        stored = stored or self._archived_manifest(ref, wanted, end)
        if stored is None:
            return None
        manifest, data = stored
        directory = self._local_dir(ref)
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
                onto: Snapshot | None = None, onto_archived: bool = False) -> Snapshot:  # fmt: skip
        """Replay the raw events into the named tables; `onto` a current snapshot they are added to
        (`onto_archived`: whose tables the archive already holds)."""
        started = time.perf_counter()
        con = duckdb.connect()
        paths = self.mirror.paths(parts)
        if paths:
            con.execute(f"CREATE VIEW events AS SELECT * FROM {read_parquet_sql(paths)}")
        else:
            con.register("events", pa.table({name: [] for name in EVENTS.names}, schema=EVENTS))
        rows = create_snapshot_tables(con, end, names)
        self.derived += 1
        kept = onto.manifest.tables if onto is not None else {}
        manifest = documents.SnapshotManifest(
            schema_version=SNAPSHOT_SCHEMA_VERSION, parts=parts_fingerprint(parts), closed=end.closed,
            end_ns=end.end_ns, built_at_ms=time.time_ns() // 1_000_000, tables={**kept, **rows},
        )  # fmt: skip
        log.info("derived %s of %s from %d parts in %.1f s", ", ".join(names), ref.path, len(parts),
                 time.perf_counter() - started)  # fmt: skip
        upload_too = onto.tables if onto is not None and not onto_archived else {}
        # The writer reads the tables through a cursor of its own, made here: only one thread at a time
        # may make a cursor of a connection.
        writing = self._writer.submit(self._write, ref, con.cursor(), names, manifest, upload_too)
        with self._guard:
            self._writing[ref] = writing
        writing.add_done_callback(lambda done: self._forget_write(ref, done))
        directory = self._local_dir(ref)
        return Snapshot({name: directory / f"{name}.parquet" for name in manifest.tables}, manifest, "derived",
                        database=con)  # fmt: skip

    def _forget_write(self, ref: layout.SessionRef, done: Future[None]) -> None:
        with self._guard:
            if self._writing.get(ref) is done:
                del self._writing[ref]

    def _write(self, ref: layout.SessionRef, database: duckdb.DuckDBPyConnection, names: tuple[str, ...],
               manifest: documents.SnapshotManifest, upload_too: dict[str, Path]) -> None:  # fmt: skip
        """The writer thread's work: a derived snapshot's files in the cache, then (closed) in the archive.

        `upload_too`: tables of the snapshot this one adds to, which the archive does not hold yet.
        """
        try:
            started = time.perf_counter()
            encoded = encode_tables({name: snapshot_table(database, name) for name in names})
            directory = self._local_dir(ref)
            for name, data in encoded.items():
                write_atomically(directory / f"{name}.parquet", data)
            # Last: the manifest is what makes the files count as the cached snapshot.
            write_atomically(directory / "snapshot.json", documents.encode(manifest))
            if manifest.closed:
                extra = {name: path.read_bytes() for name, path in upload_too.items() if name not in encoded}
                self._write_back(ref, encoded | extra, manifest)
            log.info("wrote the snapshot of %s in %.1f s", ref.path, time.perf_counter() - started)
        except Exception:
            # Nothing is lost: without its manifest the snapshot is derived again when next wanted.
            log.exception("could not write the snapshot of %s", ref.path)

    def _write_back(
        self, ref: layout.SessionRef, encoded: dict[str, bytes], manifest: documents.SnapshotManifest
    ) -> None:
        # A read-only archive still serves: the snapshot then lives in this server's cache only.
        tags = layout.object_tags("snapshots", ref)
        try:
            for name, data in encoded.items():
                self.storage.put(layout.snapshot_key(ref, name), data, tags=tags)
            self.storage.put(layout.snapshot_manifest_key(ref), documents.encode(manifest), tags=tags)
        except StorageError as exc:
            log.warning("could not write the snapshot of %s back to the archive: %s", ref.path, exc)


def encode_tables(tables: dict[str, pa.Table]) -> dict[str, bytes]:
    """Parquet of each table, encoded side by side (the encoder lets go of the GIL)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(tables, pool.map(table_to_parquet, tables.values()), strict=True))
