"""The snapshot store: derived once per set of raw parts, written back for every replica, rebuilt when
the schema or the parts change, and never derived twice while its files are still being written."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest

from archive import documents, layout
from archive.parquet import rows_to_table, table_to_parquet
from archive.schema import EVENTS, SNAPSHOT_SCHEMA_VERSION
from archive.storage import ObjectNotFound, StorageError
from archive.storage.local import LocalStorage
from historyserver.mirror import Mirror
from historyserver.reconstruct import ON_DEMAND_TABLES, OPENING_TABLES, SessionEnd
from historyserver.snapshots import SnapshotStore

from .conftest import fixture_posts
from .test_reconstruct import RUN1_EXPORT, capture_rows

REF = layout.SessionRef("ml", "train", "session_2026-11-28_19-03-57_108652_5250")
CLOSED = SessionEnd(closed=True, end_ns=1_795_892_800_000_000_000, reason="the RayJob finished")


@pytest.fixture(scope="module")
def capture() -> list[dict[str, Any]]:
    return capture_rows(fixture_posts(), RUN1_EXPORT)


@pytest.fixture
def storage(tmp_path: Path, capture: list[dict[str, Any]]) -> LocalStorage:
    storage = LocalStorage(tmp_path / "archive")
    add_part(storage, capture[: len(capture) // 2], "0001")
    add_part(storage, capture[len(capture) // 2 :], "0002")
    return storage


def add_part(storage: LocalStorage, rows: list[dict[str, Any]], seq: str) -> None:
    storage.put(layout.part_key("events", REF, "head", seq), table_to_parquet(rows_to_table(rows, EVENTS)))


def store(storage: LocalStorage, cache: Path) -> SnapshotStore:
    return SnapshotStore(storage, Mirror(storage, cache), cache)


def archived_manifest(storage: LocalStorage) -> documents.SnapshotManifest:
    return documents.decode(storage.get(layout.snapshot_manifest_key(REF)), documents.SnapshotManifest)


def test_a_closed_session_is_derived_once_and_every_replica_reads_it(storage: LocalStorage, tmp_path: Path) -> None:
    first = store(storage, tmp_path / "one")
    derived = first.load(REF, CLOSED)
    assert derived.source == "derived" and first.derived == 1
    # Handed over as the tables of a database, their files on their way.
    assert derived.database is not None
    assert {name for (name,) in derived.database.execute("SELECT table_name FROM duckdb_tables()").fetchall()} >= set(
        OPENING_TABLES
    )
    first.wait_written()
    assert set(archived_manifest(storage).tables) == set(OPENING_TABLES)
    assert first.load(REF, CLOSED).source == "cache"
    replica = store(storage, tmp_path / "two")
    opened = replica.load(REF, CLOSED)
    assert (opened.source, replica.derived) == ("archive", 0)
    assert all(path.exists() for path in opened.tables.values())


def test_nothing_is_derived_twice_while_the_files_are_being_written(storage: LocalStorage, tmp_path: Path) -> None:
    snapshots = store(storage, tmp_path / "cache")
    release = threading.Event()
    write = snapshots._write

    def slow_write(*args: Any) -> None:
        release.wait(10)
        write(*args)

    snapshots._write = slow_write  # type: ignore[method-assign]
    snapshots.load(REF, CLOSED)
    answers: list[Any] = []
    readers = [threading.Thread(target=lambda: answers.append(snapshots.load(REF, CLOSED))) for _ in range(3)]
    readers.append(threading.Thread(target=lambda: answers.append(snapshots.table(REF, CLOSED, "jobs"))))
    for reader in readers:
        reader.start()
    release.set()
    for reader in readers:
        reader.join(30)
    assert len(answers) == 4 and snapshots.derived == 1
    jobs, _ = answers[-1]
    assert {job["submission_id"] for job in jobs.to_pylist()} >= {"probe-job-1", "probe-job-2"}


def test_new_parts_or_a_newer_schema_derive_it_again(storage: LocalStorage, tmp_path: Path,
                                                     capture: list[dict[str, Any]]) -> None:  # fmt: skip
    snapshots = store(storage, tmp_path / "cache")
    running = SessionEnd(closed=False, end_ns=None, reason=None)
    before = snapshots.load(REF, running)
    assert snapshots.load(REF, running).source == "cache"
    add_part(storage, capture[:10], "0003")  # a late part
    after = snapshots.load(REF, running)
    assert after.source == "derived" and after.manifest.parts != before.manifest.parts
    # A running session's snapshot stays local: it will change.
    snapshots.wait_written()
    with pytest.raises(ObjectNotFound):
        storage.get(layout.snapshot_manifest_key(REF))
    # An archive written by an older server: the same parts, an older schema.
    snapshots.load(REF, CLOSED)
    snapshots.wait_written()
    old = msgspec.structs.replace(archived_manifest(storage), schema_version=SNAPSHOT_SCHEMA_VERSION - 1)
    storage.put(layout.snapshot_manifest_key(REF), documents.encode(old))
    newer = store(storage, tmp_path / "newer")
    assert newer.load(REF, CLOSED).source == "derived" and newer.derived == 1
    newer.wait_written()
    assert archived_manifest(storage).schema_version == SNAPSHOT_SCHEMA_VERSION


def test_an_on_demand_table_is_added_to_the_written_snapshot(storage: LocalStorage, tmp_path: Path) -> None:
    snapshots = store(storage, tmp_path / "cache")
    opened = snapshots.load(REF, CLOSED)
    [name] = ON_DEMAND_TABLES
    assert name not in opened.tables
    grown = snapshots.with_table(REF, CLOSED, opened, name)
    assert grown.tables[name].exists() and snapshots.derived == 2
    assert set(archived_manifest(storage).tables) == {*OPENING_TABLES, name}
    assert snapshots.with_table(REF, CLOSED, grown, name) is grown
    replica = store(storage, tmp_path / "replica")
    assert name in replica.load(REF, CLOSED).tables and replica.derived == 0


def test_a_read_only_archive_still_serves_from_the_local_cache(storage: LocalStorage, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    def refuse(*_: Any, **__: Any) -> None:
        raise StorageError("AccessDenied: the archive is read-only")

    snapshots = store(storage, tmp_path / "cache")
    monkeypatch.setattr(storage, "put", refuse)
    snapshots.load(REF, CLOSED)
    snapshots.wait_written()
    assert snapshots.load(REF, CLOSED).source == "cache" and snapshots.derived == 1
