"""The session catalog against real archives (a folder, moto's S3): what a user listing sessions sees."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from archive import documents, layout
from archive.storage import ObjectInfo, S3Options, Storage, StorageError, open_storage
from historyserver.catalog import MAX_LIMIT, Catalog, SessionQuery

from .objectstores import create_bucket, moto_server

NOW_MS = 1_750_000_000_000
MINUTE_MS = 60_000
DAY_MS = 86_400_000


class Clock:
    """The catalog's clock, moved by hand: status changes with time are tested without sleeping."""

    def __init__(self, now_ms: int = NOW_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> float:
        return self.now_ms / 1000


class CountingStorage:
    """A real storage that counts reads and can be told to fail some of them."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.supports_tags = inner.supports_tags
        self.reads: list[str] = []
        self.listed: list[str] = []  # the prefixes listed
        self.failing: set[str] = set()

    def put(self, key: str, data: bytes, tags: Mapping[str, str] | None = None) -> None:
        self.inner.put(key, data, tags)

    def get(self, key: str) -> bytes:
        self.reads.append(key)
        if key in self.failing:
            raise StorageError(f"the store did not answer for {key}")
        return self.inner.get(key)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        self.listed.append(prefix)
        return self.inner.list(prefix, start_after=start_after)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def get_tags(self, key: str) -> dict[str, str]:
        return self.inner.get_tags(key)


def ref(namespace: str = "ml", cluster: str = "rc-1", session: str = "session_1") -> layout.SessionRef:
    return layout.SessionRef(namespace, cluster, session)


def write_manifest(
    storage: Storage,
    where: layout.SessionRef,
    start_ms: int = NOW_MS - 10 * MINUTE_MS,
    labels: dict[str, str] | None = None,
    owner: documents.Owner | None = None,
    queue: str | None = None,
    rayjob: str | None = None,
) -> None:
    manifest = documents.Manifest(
        namespace=where.namespace,
        cluster=where.cluster,
        session=where.session,
        start_time_ms=start_ms,
        ray_version="2.60.0",
        head_node="head-pod",
        owner=owner or documents.Owner(),
        labels=labels or {},
        kubernetes=documents.Kubernetes(
            pod="head-pod", raycluster=where.cluster, rayjob=rayjob, queue=queue, priority_class="batch"
        ),
    )
    storage.put(layout.manifest_key(where), documents.encode(manifest))


def write_marker(
    storage: Storage,
    where: layout.SessionRef,
    node: str = "head-pod",
    heartbeat_ms: int = NOW_MS,
    final: bool = False,
    events: int = 0,
    role: str = "head",
) -> None:
    marker = documents.NodeMarker(
        node=node,
        role=role,
        last_heartbeat_ms=heartbeat_ms,
        started_at_ms=NOW_MS - 11 * MINUTE_MS,
        final=final,
        events_uploaded=events,
    )
    storage.put(layout.node_marker_key(where, node), documents.encode(marker))


def write_closed(storage: Storage, where: layout.SessionRef, closed_ms: int = NOW_MS - MINUTE_MS) -> None:
    closed = documents.Closed(closed_at_ms=closed_ms, closed_by="head-pod", reason="the cluster was deleted")
    storage.put(layout.closed_key(where), documents.encode(closed))


def names(rows: list[dict[str, Any]]) -> list[str]:
    return [row["session"] for row in rows]


def row_of(catalog: Catalog, where: layout.SessionRef) -> dict[str, Any]:
    row = catalog.get(where.namespace, where.cluster, where.session)
    assert row is not None, f"{where.path} is not in the catalog"
    return row


@pytest.fixture
def storage(tmp_path: Path) -> CountingStorage:
    return CountingStorage(open_storage(str(tmp_path / "archive")))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def catalog(storage: CountingStorage, clock: Clock) -> Iterator[Catalog]:
    with Catalog(storage, clock=clock) as catalog:
        yield catalog


# --- what a session looks like ------------------------------------------------------------------


def test_closed_running_and_incomplete(storage: CountingStorage, catalog: Catalog) -> None:
    closed = ref(session="closed")
    write_manifest(storage, closed, start_ms=NOW_MS - 30 * MINUTE_MS, labels={"team": "search"}, queue="gpu")
    write_marker(storage, closed, heartbeat_ms=NOW_MS - 2 * MINUTE_MS, final=True, events=700)
    write_marker(storage, closed, node="worker-1", role="worker", heartbeat_ms=NOW_MS - 3 * MINUTE_MS, events=300)
    write_closed(storage, closed, closed_ms=NOW_MS - MINUTE_MS)

    running = ref(session="running")
    write_manifest(storage, running)
    write_marker(storage, running, heartbeat_ms=NOW_MS - 5_000)

    silent = ref(session="silent")
    write_manifest(storage, silent)
    write_marker(storage, silent, heartbeat_ms=NOW_MS - 5 * MINUTE_MS)

    # Every collector said goodbye but the head never wrote closed.json: not running, not closed either.
    goodbye = ref(session="goodbye")
    write_manifest(storage, goodbye)
    write_marker(storage, goodbye, heartbeat_ms=NOW_MS - 5_000, final=True)

    stats = catalog.refresh()
    assert (stats.documents_read, stats.sessions_added, stats.documents_unreadable) == (10, 4, 0)

    row = row_of(catalog, ref("ml", "rc-1", "closed"))
    assert row["status"] == "closed"
    assert row["start_time_ms"] == NOW_MS - 30 * MINUTE_MS
    assert row["end_time_ms"] == NOW_MS - MINUTE_MS
    assert row["duration_ms"] == 29 * MINUTE_MS
    assert (row["closed_reason"], row["closed_by"]) == ("the cluster was deleted", "head-pod")
    assert (row["nodes"], row["nodes_final"], row["events_uploaded"]) == (2, 1, 1000)
    assert row["last_heartbeat_ms"] == NOW_MS - 2 * MINUTE_MS
    assert row["labels"] == {"team": "search"}
    assert (row["queue"], row["priority_class"], row["raycluster"]) == ("gpu", "batch", "rc-1")
    assert (row["ray_version"], row["head_node"], row["has_manifest"]) == ("2.60.0", "head-pod", True)
    assert row["unreadable"] == []

    assert row_of(catalog, ref("ml", "rc-1", "running"))["status"] == "running"
    assert row_of(catalog, ref("ml", "rc-1", "silent"))["status"] == "incomplete"
    assert row_of(catalog, ref("ml", "rc-1", "goodbye"))["status"] == "incomplete"
    assert row_of(catalog, ref("ml", "rc-1", "silent"))["end_time_ms"] == NOW_MS - 5 * MINUTE_MS
    assert catalog.get("ml", "rc-1", "nothing") is None
    assert catalog.get("ml", "../rc-1", "closed") is None


def test_a_session_without_manifest_shows_what_is_known(storage: CountingStorage, catalog: Catalog) -> None:
    markers_only = ref(session="markers-only")
    write_marker(storage, markers_only, node="worker-1", role="worker", heartbeat_ms=NOW_MS - 1_000, events=5)
    write_marker(storage, markers_only, node="head-pod", heartbeat_ms=NOW_MS - 2_000, events=7)
    parts_only = ref(cluster="rc-2", session="parts-only")
    storage.put(layout.part_key("events", parts_only, "worker-1", "000001"), b"x" * 100)
    storage.put(layout.part_key("logs", parts_only, "worker-2", "000001"), b"y" * 50)

    catalog.refresh()
    row = row_of(catalog, ref("ml", "rc-1", "markers-only"))
    assert (row["status"], row["has_manifest"], row["nodes"], row["events_uploaded"]) == ("running", False, 2, 12)
    assert row["start_time_ms"] == NOW_MS - 11 * MINUTE_MS  # the collectors' start stands in for the session's
    assert row["head_node"] == "head-pod"  # from the marker of the node whose role is head
    assert (row["labels"], row["owner_name"], row["ray_version"]) == ({}, None, None)
    # Parts are only looked at when asked for: listing them all is far dearer than listing sessions/.
    assert catalog.get("ml", "rc-2", "parts-only") is None

    stats = catalog.refresh(scan_parts=True)
    assert (stats.parts_listed, stats.sessions_added, stats.documents_read) == (2, 1, 0)
    parts_row = row_of(catalog, ref("ml", "rc-2", "parts-only"))
    assert (parts_row["status"], parts_row["parts"], parts_row["parts_bytes"], parts_row["nodes"]) == (
        "incomplete",
        2,
        150,
        2,
    )


def test_owner_falls_back_to_the_custom_resource_kuberay_names(storage: CountingStorage, catalog: Catalog) -> None:
    write_manifest(storage, ref(session="told"), owner=documents.Owner(kind="RayService", name="serve-1"))
    write_manifest(storage, ref(session="from-labels"), rayjob="nightly")
    write_manifest(storage, ref(session="cluster-only"))
    catalog.refresh()
    owners = {
        row["session"]: (row["owner_kind"], row["owner_name"]) for row in catalog.list_sessions(SessionQuery())[1]
    }
    assert owners == {
        "told": ("RayService", "serve-1"),
        "from-labels": ("RayJob", "nightly"),
        "cluster-only": ("RayCluster", "rc-1"),
    }


# --- filters, sorting, paging -------------------------------------------------------------------


@pytest.fixture
def fleet(storage: CountingStorage, catalog: Catalog) -> Catalog:
    """Six sessions over two namespaces, two queues and three owners, one started each day."""
    specs = [
        # session, namespace, cluster, owner, labels, queue, state
        ("s0", "ml", "rc-a", ("RayJob", "train"), {"team": "search", "env": "prod"}, "gpu", "closed"),
        ("s1", "ml", "rc-a", ("RayJob", "train"), {"team": "search", "env": "dev"}, "gpu", "running"),
        ("s2", "ml", "rc-b", ("RayJob", "eval"), {"team": "ads", "env": "prod"}, "cpu", "incomplete"),
        ("s3", "data", "rc-c", ("RayCluster", "etl"), {"team": "ads"}, "cpu", "closed"),
        ("s4", "data", "rc-c", ("RayCluster", "etl"), {}, None, "running"),
        ("s5", "data", "rc-d", ("RayJob", "etl"), {"team": "search", "env": "prod"}, "gpu", "closed"),
    ]
    for day, (session, namespace, cluster, (kind, name), labels, queue, state) in enumerate(specs):
        where = ref(namespace, cluster, session)
        start = NOW_MS - (6 - day) * DAY_MS
        write_manifest(storage, where, start, labels, documents.Owner(kind=kind, name=name), queue)
        heartbeat = NOW_MS - 10_000 if state == "running" else start + MINUTE_MS * (day + 1)
        write_marker(storage, where, heartbeat_ms=heartbeat, events=100 * day)
        if state == "closed":
            write_closed(storage, where, closed_ms=heartbeat)
    catalog.refresh()
    return catalog


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (SessionQuery(), ["s5", "s4", "s3", "s2", "s1", "s0"]),
        (SessionQuery(namespace="ml"), ["s2", "s1", "s0"]),
        (SessionQuery(cluster="rc-c"), ["s4", "s3"]),
        (SessionQuery(namespace="data", cluster="rc-a"), []),
        (SessionQuery(owner="etl"), ["s5", "s4", "s3"]),
        (SessionQuery(owner="RayJob/etl"), ["s5"]),
        (SessionQuery(owner="rayjob/train"), ["s1", "s0"]),
        (SessionQuery(owner="RayCluster/train"), []),
        (SessionQuery(labels=["team=search"]), ["s5", "s1", "s0"]),
        (SessionQuery(labels=["team=search", "env=prod"]), ["s5", "s0"]),
        (SessionQuery(labels=["env"]), ["s5", "s2", "s1", "s0"]),
        (SessionQuery(labels=["team=nobody"]), []),
        (SessionQuery(status="running"), ["s4", "s1"]),
        (SessionQuery(status="closed"), ["s5", "s3", "s0"]),
        (SessionQuery(status="incomplete"), ["s2"]),
        (SessionQuery(queue="gpu"), ["s5", "s1", "s0"]),
        (SessionQuery(started_after_ms=NOW_MS - 4 * DAY_MS), ["s5", "s4", "s3", "s2"]),
        (SessionQuery(started_before_ms=NOW_MS - 4 * DAY_MS), ["s1", "s0"]),
        (SessionQuery(started_after_ms=NOW_MS - 5 * DAY_MS, started_before_ms=NOW_MS - 3 * DAY_MS), ["s2", "s1"]),
        (SessionQuery(text="RC-C"), ["s4", "s3"]),
        (SessionQuery(text="trai"), ["s1", "s0"]),
        (SessionQuery(text="%"), []),  # no LIKE wildcards: the text is matched as it is
        (SessionQuery(namespace="ml", status="closed", queue="gpu", labels=["env=prod"]), ["s0"]),
        # Values that would be SQL if pasted in are only ever parameters.
        (SessionQuery(namespace="ml' OR '1'='1"), []),
    ],
)
def test_filters(fleet: Catalog, query: SessionQuery, expected: list[str]) -> None:
    total, rows = fleet.list_sessions(query)
    assert names(rows) == expected
    assert total == len(expected)


def test_sorting(fleet: Catalog) -> None:
    assert names(fleet.list_sessions(SessionQuery(sort="start_time_ms"))[1]) == ["s0", "s1", "s2", "s3", "s4", "s5"]
    assert names(fleet.list_sessions(SessionQuery(sort="-events_uploaded"))[1]) == ["s5", "s4", "s3", "s2", "s1", "s0"]
    # Ties are broken by the session's path (namespace first): the same order on every page.
    assert names(fleet.list_sessions(SessionQuery(sort="status"))[1]) == ["s3", "s5", "s0", "s2", "s4", "s1"]
    # Missing values come last in either direction.
    assert names(fleet.list_sessions(SessionQuery(sort="closed_at_ms"))[1])[-3:] == ["s4", "s1", "s2"]
    assert names(fleet.list_sessions(SessionQuery(sort="-closed_at_ms"))[1])[-3:] == ["s4", "s1", "s2"]
    assert fleet.list_sessions(SessionQuery(sort=None))[1] == fleet.list_sessions(SessionQuery())[1]


def test_paging(fleet: Catalog) -> None:
    seen: list[str] = []
    for offset in range(0, 7, 2):
        total, rows = fleet.list_sessions(SessionQuery(sort="duration_ms", limit=2, offset=offset))
        assert total == 6
        assert len(rows) == min(2, 6 - offset)
        seen += names(rows)
    assert sorted(seen) == ["s0", "s1", "s2", "s3", "s4", "s5"]
    assert fleet.list_sessions(SessionQuery(offset=100)) == (6, [])


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (SessionQuery(sort="nope"), "invalid sort 'nope'"),
        (SessionQuery(sort="-"), "invalid sort '-'"),
        (SessionQuery(sort="labels"), "invalid sort 'labels'"),
        (SessionQuery(sort="start_time_ms; DROP TABLE sessions"), "invalid sort"),
        (SessionQuery(status="dead"), "invalid status 'dead'"),
        (SessionQuery(limit=0), "invalid limit 0"),
        (SessionQuery(limit=MAX_LIMIT + 1), f"invalid limit {MAX_LIMIT + 1}"),
        (SessionQuery(offset=-1), "invalid offset -1"),
        (SessionQuery(labels=["=prod"]), "invalid label filter '=prod'"),
    ],
)
def test_invalid_queries_raise_value_error(fleet: Catalog, query: SessionQuery, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        fleet.list_sessions(query)
    if "sort" in message:
        # The message tells the user what would have worked.
        assert "start_time_ms" in str(raised.value) and "'-'" in str(raised.value)
    assert fleet.list_sessions(SessionQuery())[0] == 6


# --- refreshing -----------------------------------------------------------------------------------


def test_unchanged_archive_reads_nothing_and_closed_json_flips_status(
    storage: CountingStorage, catalog: Catalog
) -> None:
    for i in range(20):
        where = ref(session=f"s{i:02d}")
        write_manifest(storage, where)
        write_marker(storage, where, heartbeat_ms=NOW_MS - 1_000)
    first = catalog.refresh()
    assert (first.documents_listed, first.documents_read, first.sessions_added) == (40, 40, 20)

    storage.reads.clear()
    again = catalog.refresh()
    assert storage.reads == []
    assert (again.documents_read, again.sessions_added, again.sessions_updated, again.sessions_removed) == (0, 0, 0, 0)

    write_closed(storage, ref(session="s07"))
    after_close = catalog.refresh()
    assert storage.reads == [layout.closed_key(ref(session="s07"))]
    assert (after_close.documents_read, after_close.sessions_updated, after_close.sessions_added) == (1, 1, 0)
    assert catalog.list_sessions(SessionQuery(status="closed"))[0] == 1
    assert row_of(catalog, ref("ml", "rc-1", "s07"))["status"] == "closed"
    assert catalog.list_sessions(SessionQuery(status="running"))[0] == 19


def test_status_moves_on_with_time_alone(storage: CountingStorage, catalog: Catalog, clock: Clock) -> None:
    where = ref()
    write_manifest(storage, where)
    write_marker(storage, where, heartbeat_ms=NOW_MS)
    catalog.refresh()
    assert row_of(catalog, where)["status"] == "running"

    clock.now_ms += 89_000
    assert catalog.refresh().sessions_updated == 0
    clock.now_ms += 2_000
    storage.reads.clear()
    stats = catalog.refresh()
    assert storage.reads == []
    assert (stats.documents_read, stats.sessions_updated) == (0, 1)
    assert row_of(catalog, where)["status"] == "incomplete"
    assert catalog.list_sessions(SessionQuery(status="incomplete"))[0] == 1

    # The collector comes back (a network partition healed): a new heartbeat makes it running again.
    clock.now_ms += 10_000
    write_marker(storage, where, heartbeat_ms=clock.now_ms, events=1)
    catalog.refresh()
    assert row_of(catalog, where)["status"] == "running"


def test_changed_and_removed_documents(storage: CountingStorage, catalog: Catalog) -> None:
    kept, dropped = ref(session="kept"), ref(session="dropped")
    for where in (kept, dropped):
        write_manifest(storage, where, labels={"team": "a"})
        write_marker(storage, where, heartbeat_ms=NOW_MS - 1_000)
    catalog.refresh()

    write_manifest(storage, kept, labels={"team": "b", "tier": "gold"})
    storage.delete(layout.manifest_key(dropped))
    storage.delete(layout.node_marker_key(dropped, "head-pod"))
    stats = catalog.refresh()
    assert (stats.documents_read, stats.documents_removed) == (1, 2)
    assert (stats.sessions_updated, stats.sessions_removed) == (1, 1)
    assert names(catalog.list_sessions(SessionQuery())[1]) == ["kept"]
    assert catalog.list_sessions(SessionQuery(labels=["team=a"]))[0] == 0
    assert catalog.list_sessions(SessionQuery(labels=["tier=gold"]))[0] == 1


def test_corrupt_manifest_is_reported_and_skipped(
    storage: CountingStorage, catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad = ref(session="good"), ref(session="bad")
    write_manifest(storage, good)
    write_marker(storage, good)
    storage.put(layout.manifest_key(bad), b'{"namespace": "ml", "cluster": "rc-1", "session": "bad", "start_')
    write_marker(storage, bad, events=42)
    storage.put("sessions/ml/rc-1/bad/notes.txt", b"not a session document")

    with caplog.at_level(logging.WARNING, logger="historyserver.catalog"):
        stats = catalog.refresh()
    assert (stats.documents_read, stats.documents_unreadable, stats.sessions_added) == (4, 1, 2)
    assert layout.manifest_key(bad) in caplog.text

    row = row_of(catalog, ref("ml", "rc-1", "bad"))
    assert (row["has_manifest"], row["events_uploaded"], row["status"]) == (False, 42, "running")
    assert row["unreadable"] == [layout.manifest_key(bad)]
    assert row_of(catalog, ref("ml", "rc-1", "good"))["has_manifest"] is True

    # Reported once: the same broken bytes are not read (nor logged) again at every refresh.
    storage.reads.clear()
    assert catalog.refresh().documents_read == 0
    assert storage.reads == []

    write_manifest(storage, bad, labels={"fixed": "yes"})
    assert catalog.refresh().documents_unreadable == 0
    row = row_of(catalog, ref("ml", "rc-1", "bad"))
    assert (row["has_manifest"], row["unreadable"], row["labels"]) == (True, [], {"fixed": "yes"})


def test_a_document_the_store_fails_to_give_is_read_again_next_time(storage: CountingStorage, catalog: Catalog) -> None:
    where = ref()
    write_manifest(storage, where)
    write_marker(storage, where)
    storage.failing.add(layout.manifest_key(where))
    stats = catalog.refresh()
    assert (stats.documents_read, stats.sessions_added) == (1, 1)
    assert row_of(catalog, ref("ml", "rc-1", "session_1"))["has_manifest"] is False

    storage.failing.clear()
    assert catalog.refresh().documents_read == 1
    assert row_of(catalog, ref("ml", "rc-1", "session_1"))["has_manifest"] is True


def test_a_catalog_file_is_reopened_without_reading_again(storage: CountingStorage, tmp_path: Path) -> None:
    write_manifest(storage, ref())
    write_marker(storage, ref())
    database = tmp_path / "state" / "catalog.duckdb"
    with Catalog(storage, database, clock=Clock()) as catalog:
        catalog.refresh()
    storage.reads.clear()
    with Catalog(storage, database, clock=Clock()) as catalog:
        assert catalog.refresh().documents_read == 0
        assert names(catalog.list_sessions(SessionQuery())[1]) == ["session_1"]
    assert storage.reads == []

    # The same file pointed at another archive starts afresh rather than showing the first one's sessions.
    other = CountingStorage(open_storage(str(tmp_path / "other-archive")))
    with Catalog(other, database, clock=Clock()) as catalog:
        assert catalog.list_sessions(SessionQuery()) == (0, [])


def test_listing_while_a_refresh_runs(storage: CountingStorage, catalog: Catalog) -> None:
    for i in range(30):
        write_manifest(storage, ref(session=f"s{i:02d}"))
    catalog.refresh()
    errors: list[BaseException] = []
    stop = threading.Event()

    def keep_refreshing() -> None:
        i = 30
        try:
            while not stop.is_set():
                write_manifest(storage, ref(session=f"s{i:02d}"))
                catalog.refresh()
                i += 1
        except BaseException as exc:
            errors.append(exc)

    refresher = threading.Thread(target=keep_refreshing)
    refresher.start()
    try:
        totals = []
        for _ in range(200):
            total, rows = catalog.list_sessions(SessionQuery(limit=1000))
            # The total and the page come from one state of the catalog, never half a refresh.
            assert total == len(rows)
            totals.append(total)
    finally:
        stop.set()
        refresher.join()
    assert errors == []
    assert totals == sorted(totals) and totals[-1] > 30


# --- S3 -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        create_bucket(endpoint, "testing", "testing", "catalog-test")
        yield endpoint


def test_on_s3(moto_endpoint: str, clock: Clock) -> None:
    options = S3Options(endpoint_url=moto_endpoint, region="us-east-1", access_key="testing", secret_key="testing")
    storage = CountingStorage(open_storage(f"s3://catalog-test/{uuid.uuid4().hex[:12]}/archive", options))
    for i in range(5):
        where = ref(session=f"s{i}")
        write_manifest(storage, where, start_ms=NOW_MS - i * MINUTE_MS, labels={"i": str(i)})
        write_marker(storage, where, heartbeat_ms=NOW_MS - 1_000)
    storage.put(layout.manifest_key(ref(session="broken")), b"\xff\xfe")

    with Catalog(storage, clock=clock) as catalog:
        stats = catalog.refresh()
        assert (stats.documents_read, stats.documents_unreadable, stats.sessions_added) == (11, 1, 6)
        total, rows = catalog.list_sessions(SessionQuery(status="running", sort="start_time_ms", limit=2))
        assert total == 5 and names(rows) == ["s4", "s3"]
        assert names(catalog.list_sessions(SessionQuery(labels=["i=2"]))[1]) == ["s2"]

        storage.reads.clear()
        assert catalog.refresh().documents_read == 0
        write_closed(storage, ref(session="s2"))
        assert catalog.refresh().documents_read == 1
        assert storage.reads == [layout.closed_key(ref(session="s2"))]
        assert row_of(catalog, ref("ml", "rc-1", "s2"))["status"] == "closed"
