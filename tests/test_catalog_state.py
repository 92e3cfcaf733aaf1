"""A new replica starts from the index objects without listing `sessions/` (issue 14: at 100,000 sessions that
listing is 440 requests, two minutes on SeaweedFS) when their state (`catalog/state.json`) vouches for them:
the objects as the listing, then what the change journal names since. Every way of starting must list what
reading every document lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from archive import catalog_index, changes, layout
from archive.storage import open_storage
from historyserver.catalog import Catalog

from .test_catalog import MINUTE_MS, NOW_MS, Clock, CountingStorage, ref, write_closed, write_manifest, write_marker
from .test_catalog_persist import NAMESPACES, every_row, full_build, write_sessions

JOURNALED = 3600.0  # a catalog that follows the change journal, as the server's does


@pytest.fixture
def storage(tmp_path: Path) -> CountingStorage:
    return CountingStorage(open_storage(str(tmp_path / "archive")))


@pytest.fixture
def clock() -> Clock:
    return Clock()


def publish(storage: CountingStorage, clock: Clock, tmp_path: Path) -> list[str]:
    """What a server that read every document and follows the journal publishes."""
    with Catalog(storage, tmp_path / "publisher.duckdb", clock=clock, full_refresh_interval_s=JOURNALED) as writer:
        writer.refresh()
        return writer.publish_index(0)


def replica(storage: CountingStorage, clock: Clock) -> tuple[list[dict[str, object]], list[str], list[str]]:
    """A new replica's rows, and what its start read and listed."""
    storage.reads.clear()
    storage.listed.clear()
    with Catalog(storage, clock=clock, use_index=True, full_refresh_interval_s=JOURNALED) as started:
        started.refresh()
        return every_row(started), list(storage.reads), list(storage.listed)


def test_a_replica_lists_no_session_document_when_the_state_vouches_for_the_index(
    storage: CountingStorage, clock: Clock, tmp_path: Path
) -> None:
    write_sessions(storage, 20)
    assert layout.CATALOG_INDEX_STATE_KEY in publish(storage, clock, tmp_path)
    rows, reads, listed = replica(storage, clock)
    assert rows == full_build(storage, clock) and len(rows) == 20
    objects = [layout.catalog_index_key(ns) for ns in NAMESPACES]
    assert sorted(reads) == sorted([layout.CATALOG_INDEX_STATE_KEY, *objects])
    assert "sessions/" not in listed and listed.count(changes.PREFIX) == 1


def test_what_the_journal_names_since_is_read_and_a_deleted_session_stays_deleted(
    storage: CountingStorage, clock: Clock, tmp_path: Path
) -> None:
    refs = write_sessions(storage, 20)
    publish(storage, clock, tmp_path)
    clock.now_ms += MINUTE_MS
    # After the objects: a new session, one closed, one deleted by retention; each journaled as its writer does.
    new = ref("ml", "rc-9", "session_new")
    write_manifest(storage, new, start_ms=clock.now_ms - MINUTE_MS)
    write_marker(storage, new, final=False)
    write_closed(storage, refs[1])
    for info in list(storage.list(layout.session_prefix(refs[2]))):
        storage.delete(info.key)
    for where in (new, refs[1], refs[2]):
        changes.record(storage, where, at_ms=clock.now_ms)
    rows, reads, listed = replica(storage, clock)
    assert rows == full_build(storage, clock)
    paths = {(row["namespace"], row["cluster"], row["session"]) for row in rows}
    assert (new.namespace, new.cluster, new.session) in paths and len(rows) == 20
    assert (refs[2].namespace, refs[2].cluster, refs[2].session) not in paths
    assert next(row for row in rows if row["session"] == refs[1].session)["status"] == "closed"
    assert "sessions/" not in listed
    assert reads.count(layout.session_prefix(new) + "manifest.json") == 1


def test_a_namespace_whose_object_the_state_does_not_vouch_for_is_listed_on_its_own(
    storage: CountingStorage, clock: Clock, tmp_path: Path
) -> None:
    write_sessions(storage, 20)
    publish(storage, clock, tmp_path)
    # Another replica wrote "ml" since, from other documents: its digest is not the state's.
    key = layout.catalog_index_key("ml")
    docs = catalog_index.decode_index("ml", storage.get(key))
    storage.put(key, catalog_index.encode_index("ml", list(docs.values())[:-3]))
    rows, _, listed = replica(storage, clock)
    assert rows == full_build(storage, clock)
    assert "sessions/ml/" in listed and "sessions/" not in listed and "sessions/data/" not in listed


@pytest.mark.parametrize("why", ["older than the journal", "unreadable", "none"])
def test_without_a_state_to_trust_the_replica_lists_everything(
    storage: CountingStorage, clock: Clock, tmp_path: Path, why: str
) -> None:
    write_sessions(storage, 20)
    publish(storage, clock, tmp_path)
    if why == "older than the journal":
        clock.now_ms += changes.RETENTION_MS  # its markers since may be pruned: the journal no longer says all
    elif why == "unreadable":
        storage.put(layout.CATALOG_INDEX_STATE_KEY, b'{"version": 1, "namespaces": ')
    else:
        storage.delete(layout.CATALOG_INDEX_STATE_KEY)
    rows, _, listed = replica(storage, clock)
    assert rows == full_build(storage, clock)
    assert "sessions/" in listed


def test_a_catalog_that_does_not_follow_the_journal_vouches_for_nothing(
    storage: CountingStorage, clock: Clock
) -> None:
    write_sessions(storage, 6)
    with Catalog(storage, clock=clock, full_refresh_interval_s=0) as writer:
        writer.refresh()
        written = writer.publish_index(0)
    assert layout.CATALOG_INDEX_STATE_KEY not in written
    assert not any(info.key == layout.CATALOG_INDEX_STATE_KEY for info in storage.list(layout.CATALOG_INDEX_PREFIX))


def test_an_idle_publisher_moves_its_state_on_once_per_interval(
    storage: CountingStorage, clock: Clock, tmp_path: Path
) -> None:
    write_sessions(storage, 6)
    with Catalog(storage, tmp_path / "p.duckdb", clock=clock, full_refresh_interval_s=JOURNALED) as writer:
        writer.refresh()
        assert layout.CATALOG_INDEX_STATE_KEY in writer.publish_index(0)
        first = catalog_index.decode_state(storage.get(layout.CATALOG_INDEX_STATE_KEY))
        clock.now_ms += 10 * MINUTE_MS
        writer.refresh()
        assert writer.publish_index(3600) == []  # nothing changed, and the interval has not passed
        assert writer.publish_index(0) == [layout.CATALOG_INDEX_STATE_KEY]  # only the state: no object changed
        later = catalog_index.decode_state(storage.get(layout.CATALOG_INDEX_STATE_KEY))
    assert {ns: entry.digest for ns, entry in later.namespaces.items()} == {
        ns: entry.digest for ns, entry in first.namespaces.items()
    }
    assert all(entry.journal_cursor_ms == NOW_MS for entry in first.namespaces.values())
    assert all(entry.journal_cursor_ms == NOW_MS + 10 * MINUTE_MS for entry in later.namespaces.values())


def test_more_sessions_named_since_than_a_listing_has_pages_are_listed_whole(
    storage: CountingStorage, clock: Clock, tmp_path: Path
) -> None:
    write_sessions(storage, 10)
    publish(storage, clock, tmp_path)
    clock.now_ms += MINUTE_MS
    for index in range(101):  # more than the fewest a full listing is preferred to
        where = ref("data", "rc-busy", f"session_busy_{index:03d}")
        write_manifest(storage, where, start_ms=clock.now_ms - MINUTE_MS)
        changes.record(storage, where, at_ms=clock.now_ms)
    rows, reads, listed = replica(storage, clock)
    assert rows == full_build(storage, clock) and len(rows) == 111
    assert "sessions/" in listed
    assert not any(key.startswith("sessions/ml/") for key in reads)  # unchanged: still taken from the objects


def test_a_restart_looks_at_its_objects_after_the_interval_and_a_replica_remembers_what_it_read(
    storage: CountingStorage, clock: Clock, tmp_path: Path
) -> None:
    write_sessions(storage, 10)
    publish(storage, clock, tmp_path)
    database = tmp_path / "replica.duckdb"
    with Catalog(storage, database, clock=clock, use_index=True, full_refresh_interval_s=JOURNALED) as started:
        started.refresh()
        assert started.publish_index(0) == [layout.CATALOG_INDEX_STATE_KEY]  # the objects read are current
    with Catalog(storage, database, clock=clock, use_index=True, full_refresh_interval_s=JOURNALED) as restarted:
        restarted.refresh()
        # Not at once: a look hashes every document, seconds at 100,000 sessions beside the first pages.
        assert restarted.publish_index(300) == []
        # After the interval: it remembers the objects it read (no object written again), and vouches for them.
        assert restarted.publish_index(0) == [layout.CATALOG_INDEX_STATE_KEY]


def test_a_session_written_without_the_journal_is_found_at_the_replicas_next_refresh(
    storage: CountingStorage, clock: Clock, tmp_path: Path
) -> None:
    write_sessions(storage, 10)
    publish(storage, clock, tmp_path)
    unjournaled = ref("team-new", "rc-1", "session_copied")  # an older collector, a copy made by hand
    write_manifest(storage, unjournaled, start_ms=clock.now_ms - MINUTE_MS)
    with Catalog(storage, clock=clock, use_index=True, full_refresh_interval_s=JOURNALED) as started:
        first = started.refresh()
        assert not first.full_listing and len(every_row(started)) == 10
        second = started.refresh()  # the full listing the start left for now, in the background
        assert second.full_listing and second.sessions_added == 1
        assert every_row(started) == full_build(storage, clock)
