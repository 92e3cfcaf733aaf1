"""The catalog's incremental refresh from the archive's change journal (archive.changes), on a local folder and on
moto's S3: an idle refresh is a request or two whatever the number of sessions, and every kind of change to an
old session (a heartbeat, closed.json, a retention mark, its deletion) is still seen by the next refresh."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from archive import changes, documents, layout
from archive.storage import S3Options, Storage, open_storage
from historyserver.catalog import Catalog, RefreshStats
from maintenance.cleaner import Cleaner
from maintenance.counting import CountingStorage
from maintenance.lifecycle import s3_configuration
from maintenance.policy import Policy

from .objectstores import create_bucket, moto_server
from .test_catalog import MINUTE_MS, NOW_MS, Clock, ref, write_closed, write_manifest, write_marker

BUCKET = "journal-test"
HOUR_S = 3600.0
SESSIONS = 1100  # over 1,000 documents: a full listing is more than one S3 page


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        create_bucket(endpoint, "testing", "testing", BUCKET)
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> CountingStorage:
    if request.param == "local":
        return CountingStorage(open_storage(str(tmp_path / "archive")))
    endpoint = request.getfixturevalue("moto_endpoint")
    options = S3Options(endpoint_url=endpoint, region="us-east-1", access_key="testing", secret_key="testing")
    return CountingStorage(open_storage(f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}", options))


@pytest.fixture
def clock() -> Clock:
    return Clock()


def journaled(storage: Storage, where: layout.SessionRef, at_ms: int) -> None:
    """A writer's marker, by the writer's clock."""
    changes.record(storage, where, at_ms=at_ms)


def many_sessions(storage: Storage, count: int, at_ms: int) -> None:
    """`count` old closed sessions (a manifest each), journaled as their writers did long ago."""

    def write(i: int) -> None:
        where = ref(cluster=f"rc-{i % 7}", session=f"old-{i:05d}")
        write_manifest(storage, where, start_ms=NOW_MS - 3 * 3_600_000 - i)
        journaled(storage, where, at_ms)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, range(count)))


def requests(storage: CountingStorage) -> int:
    """What the store saw: HTTP requests on S3 (a listing's every page), calls on a local folder."""
    return storage.http_requests if storage.http else sum(storage.calls.values())


def refreshed(catalog: Catalog, storage: CountingStorage) -> tuple[RefreshStats, int]:
    storage.reset()
    stats = catalog.refresh()
    return stats, requests(storage)


def status(catalog: Catalog, where: layout.SessionRef) -> str | None:
    row = catalog.get(where.namespace, where.cluster, where.session)
    return None if row is None else row["status"]


def test_idle_refresh_is_one_request_whatever_the_sessions(storage: CountingStorage, clock: Clock) -> None:
    many_sessions(storage, SESSIONS, at_ms=NOW_MS - 2 * 3_600_000)
    with Catalog(storage, clock=clock, full_refresh_interval_s=HOUR_S) as catalog:
        stats, first = refreshed(catalog, storage)
        assert stats.full_listing and stats.sessions_added == SESSIONS
        if storage.http:  # the full listing's pages and a GET per document, and the journal's listing
            assert first >= SESSIONS + 2 + 1
        for _ in range(3):
            clock.now_ms += 10_000
            stats, spent = refreshed(catalog, storage)
            assert not stats.full_listing and stats.documents_read == 0 and stats.sessions_listed == 0
            assert spent == 1, storage.calls  # the journal's listing, nothing else
        # A new session: the journal's listing, its session's listing, its document.
        where = ref(cluster="rc-new", session="brand-new")
        write_manifest(storage, where)
        journaled(storage, where, clock.now_ms)
        clock.now_ms += 10_000
        stats, spent = refreshed(catalog, storage)
        assert (stats.full_listing, stats.sessions_added, stats.sessions_listed, spent) == (False, 1, 1, 3)
        assert status(catalog, where) == "incomplete"  # a manifest and no heartbeat
        # Its marker is still in the window at the next refresh, and costs nothing more.
        clock.now_ms += 10_000
        assert refreshed(catalog, storage)[1] == 1


def test_changes_to_old_sessions_are_seen(storage: CountingStorage, clock: Clock) -> None:
    """Heartbeats, closed.json and retention.json land in old sessions' prefixes: the journal names them."""
    olds = [ref(cluster="rc-old", session=f"s{i}") for i in range(5)]
    for i, where in enumerate(olds):
        write_manifest(storage, where, start_ms=NOW_MS - (30 + i) * MINUTE_MS)
        write_marker(storage, where, heartbeat_ms=NOW_MS - 20 * MINUTE_MS)
    with Catalog(storage, clock=clock, full_refresh_interval_s=HOUR_S) as catalog:
        catalog.refresh()
        assert {status(catalog, where) for where in olds} == {"incomplete"}
        clock.now_ms += 10_000
        beating, closing, marked, deleted, cleaned = olds
        # Another size: S3's LastModified has whole seconds, and this rewrite comes within the same one (a real
        # heartbeat comes 30 s later); a document is read again when its listed (size, mtime) changed.
        write_marker(storage, beating, heartbeat_ms=clock.now_ms, events=12_345)
        write_closed(storage, closing, closed_ms=clock.now_ms)
        expired = documents.ExpiredKind(at_ms=clock.now_ms, delete_after_ms=clock.now_ms + 1, reason="test")
        storage.put(layout.retention_key(marked), documents.encode(documents.Retention(expired={"events": expired})))
        gone = documents.Retention(deleted=expired)
        storage.put(layout.retention_key(deleted), documents.encode(gone))
        for info in list(storage.list(layout.session_prefix(cleaned))):  # as the cleaner's phase 2 does
            storage.delete(info.key)
        for where in olds:
            journaled(storage, where, clock.now_ms)
        clock.now_ms += 10_000
        stats, spent = refreshed(catalog, storage)
        assert not stats.full_listing and stats.sessions_listed == 5
        assert status(catalog, beating) == "running"
        assert status(catalog, closing) == "closed"
        assert catalog.get(marked.namespace, marked.cluster, marked.session)["expired_kinds"] == ["events"]  # type: ignore[index]
        assert status(catalog, deleted) is None and status(catalog, cleaned) is None
        assert stats.sessions_removed == 2 and stats.documents_read == 4
        # 1 journal listing + 5 session listings + 4 documents read
        assert spent == 10, storage.calls


def test_a_marker_within_the_window_is_applied_one_beyond_waits_for_the_full_listing(
    storage: CountingStorage, clock: Clock
) -> None:
    late, lost = ref(session="late"), ref(session="lost")
    with Catalog(storage, clock=clock, full_refresh_interval_s=HOUR_S, journal_window_s=300) as catalog:
        catalog.refresh()
        clock.now_ms += 10_000
        catalog.refresh()
        # Written now, but by writers whose clocks are 4 and 6 minutes behind the server's.
        write_manifest(storage, late)
        journaled(storage, late, clock.now_ms - 4 * MINUTE_MS)
        write_manifest(storage, lost)
        journaled(storage, lost, clock.now_ms - 6 * MINUTE_MS)
        clock.now_ms += 10_000
        stats = catalog.refresh()
        assert not stats.full_listing and status(catalog, late) == "incomplete" and status(catalog, lost) is None
        # The full listing at its interval is the safety net (for non-journaling writers too).
        clock.now_ms += int(HOUR_S * 1000)
        stats = catalog.refresh()
        assert stats.full_listing and status(catalog, lost) == "incomplete"


def test_the_full_listing_comes_at_its_interval(storage: CountingStorage, clock: Clock) -> None:
    with Catalog(storage, clock=clock, full_refresh_interval_s=HOUR_S) as catalog:
        assert catalog.refresh().full_listing
        write_manifest(storage, ref(session="unjournaled"))  # a writer too old to journal
        for _ in range(5):
            clock.now_ms += 10 * MINUTE_MS
            assert not catalog.refresh().full_listing
        assert status(catalog, ref(session="unjournaled")) is None
        clock.now_ms += 10 * MINUTE_MS
        assert catalog.refresh().full_listing
        assert status(catalog, ref(session="unjournaled")) == "incomplete"
        clock.now_ms += 10_000
        assert not catalog.refresh().full_listing
    # 0: every refresh lists everything, as before the journal.
    with Catalog(storage, clock=clock, full_refresh_interval_s=0) as catalog:
        assert all(catalog.refresh().full_listing for _ in range(2))


def test_a_restart_goes_on_from_the_kept_cursor(storage: CountingStorage, clock: Clock, tmp_path: Path) -> None:
    database = tmp_path / "catalog.duckdb"
    first, second = ref(session="first"), ref(session="second")
    write_manifest(storage, first)
    with Catalog(storage, database, clock=clock, full_refresh_interval_s=HOUR_S) as catalog:
        assert catalog.refresh().full_listing
    clock.now_ms += 2 * MINUTE_MS
    write_manifest(storage, second)
    journaled(storage, second, clock.now_ms)
    clock.now_ms += 10_000
    with Catalog(storage, database, clock=clock, full_refresh_interval_s=HOUR_S) as catalog:
        assert catalog.restored
        stats, spent = refreshed(catalog, storage)
        assert (stats.full_listing, stats.sessions_added, spent) == (False, 1, 3)
        assert status(catalog, first) == status(catalog, second) == "incomplete"
    # Away longer than the journal is kept: a full listing.
    clock.now_ms += changes.RETENTION_MS
    with Catalog(storage, database, clock=clock, full_refresh_interval_s=HOUR_S * 48) as catalog:
        assert catalog.refresh().full_listing


def test_many_changed_sessions_make_a_full_listing(storage: CountingStorage, clock: Clock) -> None:
    with Catalog(storage, clock=clock, full_refresh_interval_s=HOUR_S) as catalog:
        catalog.refresh()
        many_sessions(storage, 120, at_ms=clock.now_ms)  # more than a few threads list one by one
        clock.now_ms += 10_000
        stats = catalog.refresh()
        assert stats.full_listing and stats.sessions_added == 120


def test_the_journal_is_pruned_and_expired(storage: CountingStorage) -> None:
    now = changes.now_ms()
    where = ref(session="s")
    for age_h in (30, 25, 23, 1):
        journaled(storage, where, now - age_h * 3_600_000)
    assert changes.prune(storage, now) == 2
    left = [changes.parse_change_key(info.key) for info in storage.list(changes.PREFIX)]
    assert [(now - change.at_ms) // 3_600_000 for change in left if change is not None] == [23, 1]
    journaled(storage, where, now - 26 * 3_600_000)
    assert Cleaner(storage).prune_journal() == 1
    # The bucket's backstop: a lifecycle rule for changes/ whatever the policy.
    rules = s3_configuration(Policy(rules=()), "root/")["Rules"]
    assert {"Prefix": "root/changes/"} in [rule["Filter"] for rule in rules]


def test_listing_after_a_key(storage: CountingStorage) -> None:
    for key in ("a/b", "a/c/d", "a/c/e", "a/d", "a-b/c", "a0"):
        storage.put(key, b"x")
    assert [info.key for info in storage.list("a/", start_after="a/c/d")] == ["a/c/e", "a/d"]
    assert [info.key for info in storage.list("a", start_after="a/c")] == ["a/c/d", "a/c/e", "a/d", "a0"]
    assert [info.key for info in storage.list("", start_after="a-b/c")] == ["a/b", "a/c/d", "a/c/e", "a/d", "a0"]
    assert [info.key for info in storage.list("a/", start_after="a/d")] == []


def test_a_marker_key_says_when_and_which_session() -> None:
    where = ref(namespace="team-a", cluster="rc.1", session="session_2025-06-15_10-00-00_123456_1")
    key = changes.change_key(where, NOW_MS, "0a1b2c3d")
    assert key == f"changes/20250615T15/{NOW_MS}-0a1b2c3d/{where.path}"
    assert changes.parse_change_key(key) == changes.Change(key, NOW_MS, where)
    assert changes.start_after(NOW_MS) < key < changes.start_after(NOW_MS + 1)
    for other in ("changes/20250615T15/1750000000000-0a1b/ml/rc", "changes/x/1750000000000-0a1b/ml/rc/s",
                  "sessions/ml/rc/s/manifest.json", "changes/20250615T15/17500-0a1b/ml/rc/s"):  # fmt: skip
        assert changes.parse_change_key(other) is None
