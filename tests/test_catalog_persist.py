"""The catalog across restarts (issue 14): its DuckDB file under --cache-dir, and the archive's index objects
(`catalog/{namespace}.parquet`) from which a replica with an empty cache starts. Real archives (a folder,
SeaweedFS), reads counted by a wrapper around the real storage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from archive import catalog_index, documents, layout
from archive.parquet import table_to_parquet
from archive.storage import S3Options, Storage, open_storage
from archive.storage.s3 import S3Storage
from historyserver.catalog import Catalog, SessionQuery
from historyserver.server import CATALOG_FILE, HistoryServer, ServerSettings

from .objectstores import SeaweedFS, seaweedfs_server
from .test_catalog import (
    MINUTE_MS,
    NOW_MS,
    Clock,
    CountingStorage,
    ref,
    write_closed,
    write_manifest,
    write_marker,
)

NAMESPACES = ("ml", "data")


def write_sessions(storage: Storage, count: int) -> list[layout.SessionRef]:
    """`count` sessions over two namespaces: every other one closed, the rest running (a fresh heartbeat)."""
    refs = []
    for index in range(count):
        where = ref(NAMESPACES[index % 2], f"rc-{index % 3}", f"session_{index:04d}")
        write_manifest(storage, where, start_ms=NOW_MS - (index + 10) * MINUTE_MS)
        write_marker(storage, where, final=index % 2 == 0)
        if index % 2 == 0:
            write_closed(storage, where)
        refs.append(where)
    return refs


def every_row(catalog: Catalog) -> list[dict[str, Any]]:
    return catalog.list_sessions(SessionQuery(limit=1000))[1]


def full_build(storage: Storage, clock: Clock) -> list[dict[str, Any]]:
    """The catalog as reading every document gives it: what any other way of starting must list."""
    with Catalog(storage, clock=clock) as catalog:
        catalog.refresh()
        return every_row(catalog)


def document_keys(storage: Storage) -> set[str]:
    return {info.key for info in storage.list("sessions/")}


@pytest.fixture
def storage(tmp_path: Path) -> CountingStorage:
    return CountingStorage(open_storage(str(tmp_path / "archive")))


@pytest.fixture
def clock() -> Clock:
    return Clock()


def published(storage: Storage, clock: Clock) -> list[str]:
    """The index objects a replica that read every document writes."""
    with Catalog(storage, clock=clock) as writer:
        writer.refresh()
        return writer.publish_index(0)


# -- the local file ------------------------------------------------------------------------------------


def test_a_restart_with_the_file_lists_at_once_without_reading_a_document(
    storage: CountingStorage, clock: Clock, tmp_path: Path
) -> None:
    write_sessions(storage, 20)
    database = tmp_path / "cache" / CATALOG_FILE
    with Catalog(storage, database, clock=clock) as first:
        first.refresh()
        before = every_row(first)
        assert len(first.publish_index(0)) == 2
    assert len(storage.reads) == len(document_keys(storage))
    storage.reads.clear()

    with Catalog(storage, database, clock=clock) as restarted:
        assert restarted.restored
        assert every_row(restarted) == before  # before any refresh: what the last run knew
        stats = restarted.refresh()
        assert stats.documents_read == 0 and storage.reads == []
        assert restarted.publish_index(0) == []  # the index objects it wrote last run still hold
        # What changed meanwhile is read, and only that.
        write_closed(storage, ref("data", "rc-1", "session_0001"))
        restarted.refresh()
        assert storage.reads == [layout.closed_key(ref("data", "rc-1", "session_0001"))]
        assert restarted.get("data", "rc-1", "session_0001")["status"] == "closed"  # type: ignore[index]


def test_a_server_restarted_on_its_cache_is_ready_before_its_first_refresh(
    storage: CountingStorage, tmp_path: Path
) -> None:
    write_sessions(storage, 10)
    settings = ServerSettings(cache_dir=tmp_path / "cache", index_jobs=False, refresh_interval=3600,
                              catalog_index_interval=None)  # fmt: skip
    first = HistoryServer(storage, settings)
    assert not first.ready
    first.start()
    assert first.catalog.list_sessions(SessionQuery())[0] == 10
    first.stop()
    first.catalog.close()
    storage.reads.clear()

    again = HistoryServer(storage, settings)
    assert again.ready and again.readiness()["ready"]  # before start(): served from the file
    assert again.catalog.list_sessions(SessionQuery())[0] == 10
    assert storage.reads == []
    again.start()
    assert storage.reads == []  # its refresh found nothing changed
    again.stop()
    again.catalog.close()


def test_a_corrupt_file_is_rebuilt_from_the_archive(storage: CountingStorage, clock: Clock, tmp_path: Path) -> None:
    write_sessions(storage, 6)
    database = tmp_path / CATALOG_FILE
    database.write_bytes(b"not a DuckDB database, half a page of garbage" * 100)
    with Catalog(storage, database, clock=clock) as catalog:
        assert not catalog.restored
        catalog.refresh()
        assert every_row(catalog) == full_build(storage, clock)
    with Catalog(storage, database, clock=clock) as reopened:  # the rebuilt file is a good one
        assert reopened.restored


def test_a_file_of_another_version_is_rebuilt(storage: CountingStorage, clock: Clock, tmp_path: Path) -> None:
    write_sessions(storage, 6)
    database = tmp_path / CATALOG_FILE
    with Catalog(storage, database, clock=clock) as catalog:
        catalog.refresh()
    with duckdb.connect(str(database)) as db:
        db.execute("UPDATE catalog_meta SET value = '0' WHERE name = 'version'")
    storage.reads.clear()
    with Catalog(storage, database, clock=clock) as catalog:
        assert not catalog.restored
        catalog.refresh()
        assert len(storage.reads) == len(document_keys(storage))
        assert every_row(catalog) == full_build(storage, clock)


# -- the archive's index objects -------------------------------------------------------------------------


def test_a_new_replica_reads_the_index_objects_instead_of_every_document(
    storage: CountingStorage, clock: Clock
) -> None:
    write_sessions(storage, 40)
    keys = published(storage, clock)
    assert sorted(keys) == sorted(layout.catalog_index_key(namespace) for namespace in NAMESPACES)
    storage.reads.clear()

    with Catalog(storage, clock=clock, use_index=True) as replica:
        stats = replica.refresh()
        assert sorted(storage.reads) == sorted(keys)  # two GETs, not 160
        assert stats.documents_from_index == len(document_keys(storage)) == stats.documents_read
        assert every_row(replica) == full_build(storage, clock)
        # Nothing changed since the objects were written: they are not written again.
        assert replica.publish_index(0) == []


def test_what_changed_after_the_index_was_written_is_read_and_retention_wins(
    storage: CountingStorage, clock: Clock
) -> None:
    refs = write_sessions(storage, 12)
    published(storage, clock)
    added = ref("ml", "rc-9", "session_new")
    write_manifest(storage, added)
    write_marker(storage, added)
    closed = refs[1]  # was running
    write_closed(storage, closed)
    deleted = refs[2]  # retention decided; its documents are still there until the grace is over
    decided = documents.ExpiredKind(at_ms=NOW_MS, delete_after_ms=NOW_MS + MINUTE_MS, reason="older than 30 days")
    storage.put(layout.retention_key(deleted), documents.encode(documents.Retention(deleted=decided)))
    purged = refs[4]  # the cleaner already deleted every document of it
    for key in sorted(document_keys(storage)):
        if key.startswith(layout.session_prefix(purged)):
            storage.delete(key)
    storage.reads.clear()

    with Catalog(storage, clock=clock, use_index=True) as replica:
        replica.refresh()
        documents_read = {key for key in storage.reads if key.startswith("sessions/")}
        assert documents_read == {layout.manifest_key(added), layout.node_marker_key(added, "head-pod"),
                                  layout.closed_key(closed), layout.retention_key(deleted)}  # fmt: skip
        assert replica.get(added.namespace, added.cluster, added.session) is not None
        assert replica.get(closed.namespace, closed.cluster, closed.session)["status"] == "closed"  # type: ignore[index]
        # Both are still in the index objects, yet neither exists.
        assert replica.get(deleted.namespace, deleted.cluster, deleted.session) is None
        assert replica.get(purged.namespace, purged.cluster, purged.session) is None
        assert every_row(replica) == full_build(storage, clock)
        # The changed namespaces are written again; a later replica then reads no document at all.
        assert sorted(replica.publish_index(0)) == sorted(layout.catalog_index_key(ns) for ns in NAMESPACES)
    storage.reads.clear()
    with Catalog(storage, clock=clock, use_index=True) as later:
        later.refresh()
        assert all(key.startswith(layout.CATALOG_INDEX_PREFIX) for key in storage.reads)
        assert later.get(deleted.namespace, deleted.cluster, deleted.session) is None


def test_a_namespace_left_without_documents_loses_its_index_object(storage: CountingStorage, clock: Clock) -> None:
    write_sessions(storage, 4)
    published(storage, clock)
    for key in sorted(document_keys(storage)):
        if key.startswith("sessions/data/"):
            storage.delete(key)
    with Catalog(storage, clock=clock, use_index=True) as replica:
        replica.refresh()
        assert replica.publish_index(0) == [layout.catalog_index_key("data")]
    assert [info.key for info in storage.list(layout.CATALOG_INDEX_PREFIX)] == [layout.catalog_index_key("ml")]


def test_publishing_looks_at_the_documents_again_only_once_a_session_changed(
    storage: CountingStorage, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_sessions(storage, 4)
    with Catalog(storage, clock=clock) as catalog:
        catalog.refresh()
        assert len(catalog.publish_index(0)) == 2
        looked: list[object] = []
        documents_of = catalog._documents_of
        monkeypatch.setattr(catalog, "_documents_of", lambda *args: looked.append(args) or documents_of(*args))
        catalog.refresh()  # nothing changed
        assert catalog.publish_index(0) == [] and looked == [], "no session changed: no document read again"
        write_closed(storage, ref("ml", "rc-1", "session_0001"))
        catalog.refresh()
        assert catalog.publish_index(0) == [layout.catalog_index_key("ml")] and looked


def test_corrupt_foreign_and_old_index_objects_are_ignored_and_written_again(
    storage: CountingStorage, clock: Clock
) -> None:
    write_sessions(storage, 10)
    published(storage, clock)
    storage.put(layout.catalog_index_key("ml"), b"PAR1 truncated")
    # An index of another version, and one copied under another namespace's name: neither may speak for "data".
    metadata = {"ray_history.table": catalog_index.INDEX_TABLE, "ray_history.schema_version": "0"}
    old = pa.table({"key": ["sessions/old/x"]}, schema=pa.schema([("key", pa.string())], metadata=metadata))
    storage.put(layout.catalog_index_key("old"), table_to_parquet(old))
    ml_docs = [catalog_index.IndexedDocument(info.key, info.size, info.mtime_ns, storage.get(info.key))
               for info in storage.list("sessions/ml/")]  # fmt: skip
    storage.put(layout.catalog_index_key("data"), catalog_index.encode_index("ml", ml_docs))
    storage.reads.clear()

    with Catalog(storage, clock=clock, use_index=True) as replica:
        stats = replica.refresh()
        assert stats.documents_from_index == 0
        assert every_row(replica) == full_build(storage, clock)
        rewritten = replica.publish_index(0)
    # The two namespaces get good objects again; "old" has no documents, so its object goes.
    assert sorted(rewritten) == sorted(layout.catalog_index_key(ns) for ns in (*NAMESPACES, "old"))
    for namespace in NAMESPACES:
        found = catalog_index.decode_index(namespace, storage.get(layout.catalog_index_key(namespace)))
        assert set(found) == {key for key in document_keys(storage) if key.startswith(f"sessions/{namespace}/")}


def test_the_index_object_is_the_same_whoever_writes_it(storage: CountingStorage, clock: Clock) -> None:
    write_sessions(storage, 8)
    published(storage, clock)
    first = {ns: storage.get(layout.catalog_index_key(ns)) for ns in NAMESPACES}
    for namespace in NAMESPACES:
        storage.delete(layout.catalog_index_key(namespace))
    published(storage, clock)
    assert {ns: storage.get(layout.catalog_index_key(ns)) for ns in NAMESPACES} == first


def test_a_server_publishes_the_index_and_a_new_replica_starts_from_it(
    storage: CountingStorage, tmp_path: Path
) -> None:
    write_sessions(storage, 16)
    settings = ServerSettings(cache_dir=tmp_path / "one", index_jobs=False, refresh_interval=3600,
                              catalog_index_interval=0)  # fmt: skip
    server = HistoryServer(storage, settings)
    server.start()
    server.stop()
    server.catalog.close()
    assert {info.key for info in storage.list(layout.CATALOG_INDEX_PREFIX)} == {
        layout.catalog_index_key(ns) for ns in NAMESPACES
    } | {layout.CATALOG_INDEX_STATE_KEY}
    storage.reads.clear()
    storage.listed.clear()
    replica = HistoryServer(storage, ServerSettings(cache_dir=tmp_path / "two", index_jobs=False,
                                                    refresh_interval=3600, catalog_index_interval=0))  # fmt: skip
    replica.start()
    assert all(key.startswith(layout.CATALOG_INDEX_PREFIX) for key in storage.reads)
    assert "sessions/" not in storage.listed  # the state vouched for the objects (tests/test_catalog_state.py)
    assert replica.catalog.list_sessions(SessionQuery())[0] == 16
    # Its load counts the documents it took from the index as read: "N of N", not "0 of N" (/readyz, the log).
    progress = replica.load.progress()
    assert progress.documents_read == progress.documents_listed == len(document_keys(storage))
    replica.stop()
    replica.catalog.close()


# -- SeaweedFS ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    with seaweedfs_server(tmp_path_factory.mktemp("weed")) as server:
        yield server


def test_on_seaweedfs_a_replica_starts_from_the_index_and_a_restart_from_its_file(
    weed: SeaweedFS, clock: Clock, tmp_path: Path
) -> None:
    weed.create_bucket("persist")
    options = S3Options(endpoint_url=weed.endpoint_url, region="us-east-1", access_key=weed.access_key,
                        secret_key=weed.secret_key)  # fmt: skip
    storage = CountingStorage(S3Storage("persist", "archive", options))
    write_sessions(storage, 30)
    assert len(published(storage, clock)) == 2
    storage.reads.clear()

    database = tmp_path / CATALOG_FILE
    with Catalog(storage, database, clock=clock, use_index=True) as replica:
        replica.refresh()
        assert sorted(storage.reads) == sorted(layout.catalog_index_key(ns) for ns in NAMESPACES)
        rows = every_row(replica)
    assert rows == full_build(storage, clock)
    storage.reads.clear()
    with Catalog(storage, database, clock=clock, use_index=True) as restarted:
        assert restarted.restored and every_row(restarted) == rows
        restarted.refresh()
        assert storage.reads == []  # neither the index objects nor any document
