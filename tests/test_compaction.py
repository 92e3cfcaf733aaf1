"""The compactor (maintenance/compactor.py, `ray-history compact`) on real parts, in a local folder and on real
S3 servers (SeaweedFS, moto): every row kept in order, every answer of the history server the same, readers
never see a row twice, and a run that is killed, doubled or dry converges to what one run does."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import historyserver.sessions
from archive import documents, layout
from archive.compacted import SOURCES_KEY
from archive.parquet import parquet_to_table, rows_to_table, table_rows, table_to_parquet
from archive.parts import live, parts_fingerprint
from archive.schema import METRICS
from archive.storage import ObjectInfo, S3Options, Storage, open_storage
from archive.storage.s3 import S3Storage
from bench.archive_synth import write_session
from historyserver.app import create_app
from historyserver.server import HistoryServer, ServerSettings
from maintenance.compaction_plan import by_node, deletions, groups
from maintenance.compactor import CompactionReport, Compactor, Progress
from ray_history.cli import main

from .objectstores import SeaweedFS, create_bucket, moto_server, seaweedfs_server

BUCKET = "ray-history-compaction"
MOTO_KEYS = ("testing", "testing")
REF = layout.SessionRef("team-a", "train", "session_2026-11-28_19-03-57_108652_5250")
START_MS = 1_795_892_637_151
KINDS = layout.PART_KINDS
HOUR_NS = 3600 * 10**9


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    with seaweedfs_server(tmp_path_factory.mktemp("seaweedfs")) as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        create_bucket(endpoint, *MOTO_KEYS, BUCKET)
        yield endpoint


def _s3(endpoint: str, access_key: str, secret_key: str) -> S3Storage:
    options = S3Options(endpoint_url=endpoint, region="us-east-1", access_key=access_key, secret_key=secret_key)
    return S3Storage(BUCKET, f"t-{uuid.uuid4().hex[:12]}", options)


def _storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    # Servers start only when a test asks for them; each test gets a prefix of its own in the bucket.
    if request.param == "local":
        return open_storage(str(tmp_path / "archive"))
    if request.param == "moto":
        return _s3(request.getfixturevalue("moto_endpoint"), *MOTO_KEYS)
    server: SeaweedFS = request.getfixturevalue("seaweed")
    return _s3(server.endpoint_url, server.access_key, server.secret_key)


@pytest.fixture(params=["local", "seaweedfs"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    return _storage(request, tmp_path)


@pytest.fixture(params=["local", "moto", "seaweedfs"])
def any_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    return _storage(request, tmp_path)


def write(storage: Storage, ref: layout.SessionRef = REF, tasks: int = 600, rows_per_part: int = 250) -> None:
    """A closed two-node session whose events, logs and metrics are in many small parts."""
    write_session(storage, ref, tasks, seed=5, nodes=2, start_ms=START_MS, duration_s=120,
                  rows_per_part=rows_per_part, logs=True, metrics=True)  # fmt: skip


def node_tables(storage: Storage, kind: layout.PartKind, ref: layout.SessionRef = REF) -> dict[str, pa.Table]:
    """Each node's rows as a reader reads them: its live objects in sequence order, one after another."""
    by_node: dict[str, list[tuple[str, str]]] = {}
    for info in live(storage.list(layout.parts_prefix(kind, ref))):
        name = layout.parse_data_key(info.key)
        assert name is not None
        by_node.setdefault(name.node, []).append((name.first, info.key))
    return {node: pa.concat_tables([parquet_to_table(storage.get(key)) for _, key in sorted(keys)])
            for node, keys in by_node.items()}  # fmt: skip


def sequence(info: ObjectInfo) -> str:
    """Where an object's rows go among its node's: its first part's sequence (readers order by it)."""
    name = layout.parse_data_key(info.key)
    assert name is not None
    return name.first


def all_rows(storage: Storage, ref: layout.SessionRef = REF) -> dict[tuple[str, str], pa.Table]:
    return {(kind, node): table for kind in KINDS for node, table in node_tables(storage, kind, ref).items()}


def listing(storage: Storage) -> list[tuple[str, int, int]]:
    return [(info.key, info.size, info.mtime_ns) for info in storage.list()]


def data_keys(storage: Storage, ref: layout.SessionRef = REF) -> list[str]:
    return [info.key for kind in KINDS for info in storage.list(layout.parts_prefix(kind, ref))]


def figures(report: CompactionReport) -> list[tuple[Any, ...]]:
    """What a report says was (or would be) done, session by session and kind by kind."""
    return [(s.path, s.skipped, s.error, s.snapshot_updated, s.notes,
             [(k.kind, k.parts_before, k.bytes_before, k.parts_after, k.bytes_after, k.written, k.written_bytes,
               k.deleted, k.deleted_bytes, k.waiting) for k in s.kinds]) for s in report.sessions]  # fmt: skip


def later(hours: float) -> Callable[[], int]:
    """A clock this many hours ahead: deletions after the grace without waiting for it."""
    return lambda: time.time_ns() + int(hours * HOUR_NS)


# --- rows, bytes and objects ----------------------------------------------------------------------


def test_every_row_stays_in_order_in_fewer_smaller_objects(any_storage: Storage) -> None:
    storage = any_storage
    write(storage)
    before = all_rows(storage)
    parts_before = {info.key: info for info in storage.list() if layout.parse_data_key(info.key)}

    report = Compactor(storage, grace_s=0).run()

    (session,) = report.sessions
    assert session.skipped is None and session.error is None
    for kind in session.kinds:
        assert kind.parts_after < kind.parts_before, kind
        assert kind.bytes_after < kind.bytes_before, kind
        assert kind.deleted == kind.parts_before - kind.parts_after + len(kind.written)
    # Same rows, same columns, same order, node by node and kind by kind.
    after = all_rows(storage)
    assert after.keys() == before.keys()
    for where, table in before.items():
        assert after[where].equals(table, check_metadata=True), where
    # One object per node and kind: compacted, or the node's only part.
    for key in data_keys(storage):
        name = layout.parse_data_key(key)
        assert name is not None
        node_parts = [k for k in parts_before if k.startswith(layout.parts_prefix(name.kind, REF, name.node))]
        assert name.compacted or node_parts == [key]
        assert len([k for k in data_keys(storage) if k.startswith(layout.parts_prefix(name.kind, REF, name.node))]) == 1
        if name.compacted:
            # The footer names the parts merged, in order, with their rows; the tags are the parts' own.
            footer = pq.ParquetFile(io.BytesIO(storage.get(key))).metadata.metadata[SOURCES_KEY]
            sources = [(seq, rows) for seq, rows in json.loads(footer)]
            assert [layout.part_key(name.kind, REF, name.node, seq) for seq, _ in sources] == node_parts
            assert sum(rows for _, rows in sources) == after[(name.kind, name.node)].num_rows
            if storage.supports_tags:
                assert storage.get_tags(key) == layout.object_tags(name.kind, REF)

    # Idempotent: a second run finds nothing to do.
    again = Compactor(storage, grace_s=0).run()
    assert [(k.written, k.deleted) for k in again.sessions[0].kinds] == [([], 0)] * 3


def test_parts_of_another_schema_are_never_merged(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    write(storage, tasks=100)
    other = METRICS.with_metadata({**METRICS.metadata, b"ray_history.schema_version": b"2"})
    schemas = [METRICS, METRICS, other, METRICS, METRICS, other, other]
    tables = []
    for index, schema in enumerate(schemas):
        rows = [{"timestamp": 10**18 + index * 1000 + n, "node": "n", "target": "t", "name": f"m{index}",
                 "labels": "{}", "value": float(n)} for n in range(50)]  # fmt: skip
        tables.append(rows_to_table(rows, schema))
        storage.put(
            layout.part_key("metrics", REF, "odd-node", f"1795892637151-{index:08d}"), table_to_parquet(tables[-1])
        )

    Compactor(storage, grace_s=0).run()

    names = [layout.parse_data_key(info.key) for info in storage.list(layout.parts_prefix("metrics", REF, "odd-node"))]
    held = sorted((name.first[-1], name.last[-1], name.compacted) for name in names if name)
    # Version 1, 1 | a lone 2 | 1, 1 | 2, 2: split where the schema changes; the lone part stays a part.
    assert held == [("0", "1", True), ("2", "2", False), ("3", "4", True), ("5", "6", True)]
    # Each object keeps its parts' schema, and the rows read in order are the parts' rows in order.
    objects = live(storage.list(layout.parts_prefix("metrics", REF, "odd-node")))
    got = [parquet_to_table(storage.get(info.key)) for info in sorted(objects, key=sequence)]
    assert [table.schema.metadata[b"ray_history.schema_version"] for table in got] == [b"1", b"2", b"1", b"2"]
    assert [row for table in got for row in table_rows(table)] == [row for t in tables for row in table_rows(t)]


def test_the_size_bound_and_small_compacted_objects_merged_later(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    write(storage, rows_per_part=100)
    before = all_rows(storage)
    events = {info.key: info.size for info in storage.list("events/")}
    bound = sum(events.values()) // 8
    big = max(events, key=events.__getitem__)

    first = Compactor(storage, grace_s=3600, quiet_s=0, max_bytes=bound).run()

    written = first.sessions[0].kinds[0].written
    assert len(written) > 2
    for key in written:  # no compacted object holds more than the bound of parts
        name = layout.parse_data_key(key)
        assert name is not None
        held = [size for part, size in events.items() if _in_range(part, name)]
        assert len(held) > 1 and sum(held) <= bound
    if events[big] >= bound:  # a part at the bound is left as it is
        assert big in {info.key for info in live(storage.list("events/"))}
    # Fresh compacted objects are not merged again until the grace has passed, small as they are: with no
    # bound to speak of, only the parts left between them are.
    fresh = {info.key for info in storage.list("events/") if "/compacted-" in info.key}
    again = Compactor(storage, grace_s=3600, quiet_s=0).run().sessions[0].kinds[0].written
    assert again
    for key in again:
        name = layout.parse_data_key(key)
        assert name is not None and not any(_in_range(old, name) for old in fresh)
    merged = Compactor(storage, grace_s=3600, clock_ns=later(2)).run()
    assert len(merged.sessions[0].kinds[0].written) == 2  # one per node
    assert all(layout.parse_data_key(info.key).compacted for info in storage.list("events/"))  # type: ignore[union-attr]
    after = all_rows(storage)
    assert all(after[where].equals(table) for where, table in before.items())


def _in_range(key: str, name: layout.PartName) -> bool:
    """Whether the object `key` holds rows inside `name`'s range."""
    part = layout.parse_data_key(key)
    return part is not None and part.node == name.node and name.first <= part.last and part.first <= name.last


def test_compacted_logs_take_less_than_gzip_of_the_same_text(tmp_path: Path) -> None:
    """Shipped in small parts (zstd 1), log text takes more than gzip -6 of it; compacted, less."""
    from bench.logs import NODE, make_session, node_sources, write_logs
    from collector.config import LogSettings
    from collector.logs import LogShipper
    from collector.metrics import CollectorMetrics

    sources = node_sources(seed=2, workers=4)
    session = make_session(tmp_path, sources[0].node.node_id)
    raw, _ = write_logs(session / "logs", sources, 4 << 20)
    gzipped = 0
    for path in sorted(p for p in (session / "logs").rglob("*") if p.is_file()):
        packer = zlib.compressobj(6, zlib.DEFLATED, 31)
        gzipped += len(packer.compress(path.read_bytes()) + packer.flush())
    storage = open_storage(str(tmp_path / "archive"))
    ref = layout.SessionRef("default", "bench", session.name)
    shipper = LogShipper(replace(LogSettings(), part_max_bytes=256 << 10), session.parent, NODE, storage,
                         lambda _: ref, CollectorMetrics(), tmp_path / "offsets.json")  # fmt: skip
    while not shipper.poll(final=True):
        pass
    storage.put(layout.closed_key(ref), documents.encode(documents.Closed(1, NODE, "done")))
    before = node_tables(storage, "logs", ref)
    parts_bytes = sum(info.size for info in storage.list("logs/"))
    assert parts_bytes > gzipped  # what compaction is for

    Compactor(storage, grace_s=0).run()

    compacted = sum(info.size for info in storage.list("logs/"))
    assert compacted <= gzipped, f"compacted {compacted / raw:.1%} of raw, gzip -6 {gzipped / raw:.1%}"
    assert node_tables(storage, "logs", ref)[NODE].equals(before[NODE])


# --- what readers see -----------------------------------------------------------------------------


def session_urls(client: TestClient, ref: layout.SessionRef = REF) -> list[str]:
    """Every JSON endpoint of one session (the API's from /openapi.json, and Ray's own under /ray/), with
    the ids they need taken from the session itself."""
    api, ray = f"/api/v1/sessions/{ref.path}", f"/ray/{ref.path}"
    job = client.get(f"{api}/jobs").json()["items"][0]
    actor = client.get(f"{api}/actors?limit=1").json()["items"][0]
    files = client.get(f"{api}/logs").json()["items"]
    big = max(files, key=lambda item: item["size_bytes"])
    node, filename = big["node_id"], quote(big["filename"])
    metric = client.get(f"{api}/metrics").json()["items"][0]["name"]
    # A task whose logs are known (the synthetic session's actors print nothing: their logs are a 404).
    query = quote("SELECT task_id FROM tasks WHERE task_log_info IS NOT NULL ORDER BY task_id LIMIT 1")
    logged_task = client.get(f"{api}/sql?q={query}").json()["rows"][0][0]
    values = {"namespace": ref.namespace, "cluster": ref.cluster, "session": ref.session, "job_id": job["job_id"],
              "task_id": logged_task, "actor_id": actor["actor_id"]}  # fmt: skip
    required = {
        "node_id": node,
        "filename": filename,
        "pattern": "Error",
        "name": metric,
        "q": quote("SELECT count(*), count(DISTINCT event_id), min(timestamp), max(timestamp) FROM events"),
    }
    urls = []
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        if not path.startswith("/api/v1/sessions/{namespace}") or "get" not in operations:
            continue
        query = [f"{p['name']}={required[p['name']]}" for p in operations["get"].get("parameters", [])
                 if p["in"] == "query" and p.get("required")]  # fmt: skip
        urls.append(path.format(**values) + ("?" + "&".join(query) if query else ""))
    urls += [
        f"{api}/tasks?detail=true&limit=100", f"{api}/events?limit=200", f"{api}/logs/lines?node_id={node}&"
        f"filename={filename}&start_line=3&lines=20", f"{api}/metrics/query?name={metric}&by=node",
        f"{api}/sql?q=" + quote('SELECT count(*), sum(length(text)), max("offset") FROM logs'),
        f"{api}/sql?q=" + quote("SELECT count(*), min(value), max(value), count(DISTINCT labels) FROM metrics"),
        *(f"{ray}/api/v0/{name}" for name in ("tasks", "actors", "jobs", "nodes", "workers", "placement_groups")),
        f"{ray}/api/v0/tasks?detail=1&limit=100", f"{ray}/api/v0/tasks/summarize", f"{ray}/api/v0/actors/summarize",
        f"{ray}/api/v0/tasks/timeline", f"{ray}/api/jobs/", f"{ray}/nodes?view=summary", f"{ray}/logical/actors",
        f"{ray}/events", f"{ray}/api/cluster_status", f"{ray}/api/v0/logs?node_id={node}",
        f"{ray}/api/v0/logs/file?node_id={node}&filename={filename}", f"{ray}/api/jobs/{job['job_id']}",
    ]  # fmt: skip
    return urls


def answers(client: TestClient, urls: list[str]) -> dict[str, tuple[int, Any]]:
    """Each answer's status and bytes, with what changes from one request to the next taken out (the time a
    query took, the clock in a node summary, the dates inside a zip)."""
    found: dict[str, tuple[int, Any]] = {}
    for url in urls:
        response = client.get(url)
        body: Any = response.content
        if url.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(body)) as packed:
                body = {name: packed.read(name) for name in packed.namelist()}
        elif "/sql?" in url:
            body = {key: value for key, value in response.json().items() if key != "elapsed_ms"}
        elif url.endswith("/nodes?view=summary"):
            body = [{k: v for k, v in node.items() if k != "now"} for node in response.json()["data"]["summary"]]
        found[url] = (response.status_code, body)
    return found


def serve(storage: Storage, cache: Path) -> TestClient:
    settings = ServerSettings(cache_dir=cache, refresh_interval=3600, index_jobs=False)
    return TestClient(create_app(HistoryServer(storage, settings)))


def test_the_history_servers_answers_are_the_same(storage: Storage, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    write(storage)
    with serve(storage, tmp_path / "cache") as opened:
        urls = session_urls(opened)
        before = answers(opened, urls)
        # Every answer is a success, but the logs of an actor where no actor's worker left any (the synthetic
        # session's actors print nothing): that 404 must stay the same too.
        failed = [(url, status) for url, (status, _) in before.items() if status != 200]
        assert all(status == 404 and "/actors/" in url and url.endswith("/logs") for url, status in failed), failed
        opened.app.state.history.sessions.snapshots.wait_written()  # type: ignore[attr-defined]

        report = Compactor(storage, grace_s=0).run()
        assert report.sessions[0].snapshot_updated
        # A server that keeps the session open lists its parts again after a while: past the grace of a real
        # run (deletions come an hour later), here at once.
        monkeypatch.setattr(historyserver.sessions, "RAW_RELIST_S", 0.0)
        assert answers(opened, urls) == before
    # A server whose cache holds the snapshot of the parts as they were, and one with an empty cache, both
    # read the snapshot the archive holds: none derives it again.
    for cache in (tmp_path / "cache", tmp_path / "empty-cache"):
        with serve(storage, cache) as client:
            assert answers(client, urls) == before
            assert client.app.state.history.sessions.snapshots.derived == 0  # type: ignore[attr-defined]


def test_a_snapshot_older_than_the_parts_is_derived_again_after_compaction(tmp_path: Path) -> None:
    """A part that came after the snapshot was derived (a collector's late flush) makes it stale. Compacted,
    the parts are fewer objects and bytes than the snapshot was derived from, which is also how parts that
    retention expired look (and such a snapshot is kept): the compactor marks it stale so it is derived again."""
    storage = open_storage(str(tmp_path / "archive"))
    write(storage)
    with serve(storage, tmp_path / "cache") as client:
        client.get(f"/api/v1/sessions/{REF.path}/tasks")
        client.app.state.history.sessions.snapshots.wait_written()  # type: ignore[attr-defined]
    last = max((info for info in storage.list("events/")), key=lambda info: info.key)
    name = layout.parse_data_key(last.key)
    assert name is not None
    storage.put(layout.part_key("events", REF, name.node, name.first[:-1] + "9z"), storage.get(last.key))

    report = Compactor(storage, grace_s=0).run()

    assert not report.sessions[0].snapshot_updated and "marked stale" in report.sessions[0].notes[0]
    with serve(storage, tmp_path / "new-cache") as client:
        assert client.get(f"/api/v1/sessions/{REF.path}/tasks").status_code == 200
        history = client.app.state.history  # type: ignore[attr-defined]
        history.sessions.snapshots.wait_written()
        assert history.sessions.snapshots.derived == 1
    stored = documents.decode(storage.get(layout.snapshot_manifest_key(REF)), documents.SnapshotManifest)
    assert stored.parts == parts_fingerprint(live(storage.list("events/")))


def test_a_reader_between_put_and_delete_sees_every_row_once(storage: Storage) -> None:
    write(storage)
    before = all_rows(storage)
    old_listing = list(storage.list("logs/"))  # a reader that listed before the compacted objects came

    put = Compactor(storage, grace_s=3600, quiet_s=0).run()

    kinds = put.sessions[0].kinds
    assert all(k.written and k.deleted == 0 and k.waiting == k.parts_before - k.parts_after + len(k.written)
               for k in kinds)  # fmt: skip
    held = [layout.parse_data_key(info.key) for info in storage.list("events/")]
    assert any(n and n.compacted for n in held) and any(n and not n.compacted for n in held)  # both there
    after = all_rows(storage)
    assert all(after[where].equals(table) for where, table in before.items())
    # What the early reader listed is all still there within the grace.
    assert all(storage.get(info.key) for info in old_listing)

    deleted = Compactor(storage, grace_s=3600, clock_ns=later(1.5)).run()

    assert [(k.written, k.deleted, k.waiting) for k in deleted.sessions[0].kinds] == [([], k.waiting, 0) for k in kinds]
    # Nothing is left that readers do not read.
    assert sorted(info.key for kind in KINDS for info in live(storage.list(f"{kind}/"))) == sorted(data_keys(storage))
    after = all_rows(storage)
    assert all(after[where].equals(table) for where, table in before.items())


def test_a_late_part_inside_a_compacted_range_is_kept_and_reported(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    write(storage)
    Compactor(storage, grace_s=0).run()
    compacted = next(info.key for info in storage.list("metrics/"))
    name = layout.parse_data_key(compacted)
    assert name is not None and name.compacted
    late = layout.part_key("metrics", REF, name.node, name.first + "a")  # sorts inside first..last
    assert name.first < name.first + "a" < name.last
    time.sleep(0.01)
    storage.put(late, storage.get(compacted))

    report = Compactor(storage, grace_s=0, quiet_s=0).run()

    metrics = report.sessions[0].kinds[2]
    assert metrics.deleted == 0 and any(late in note for note in metrics.notes)
    assert late in data_keys(storage)


# --- the plan, from listings alone --------------------------------------------------------------

SEQ = [f"1795892637151-{n:08d}" for n in range(8)]


def held(first: int, last: int | None = None, size: int = 10, mtime: int = 100) -> ObjectInfo:
    """A listed part (`last` None) or compacted object of node n1."""
    if last is None:
        return ObjectInfo(layout.part_key("events", REF, "n1", SEQ[first]), size, mtime)
    return ObjectInfo(layout.compacted_key("events", REF, "n1", SEQ[first], SEQ[last]), size, mtime)


def planned(listing: list[ObjectInfo], max_bytes: int = 100, settled_before: int = 1000) -> list[list[str]]:
    found = groups(by_node(listing)["n1"], max_bytes, settled_before)
    return [[f"{h.name.first[-1]}-{h.name.last[-1]}" for h in group] for group in found]


def test_the_plan_packs_neighbours_up_to_the_bound() -> None:
    # A part at the bound ends a group; the bound cuts the rest in order; a lone part is left alone.
    listing = [held(0, size=40), held(1, size=40), held(2, size=40), held(3, size=100), held(4), held(5)]
    assert planned(listing) == [["0-0", "1-1"], ["4-4", "5-5"]]
    # A settled small compacted object joins its neighbours; a fresh one (mtime past settled_before) ends
    # the group, so a compactor listing while another puts plans the same groups for the rest.
    listing = [held(0), held(1), held(0, 1, mtime=100), held(2), held(3)]
    assert planned(listing) == [["0-1", "2-2", "3-3"]]
    assert planned(listing, settled_before=50) == [["2-2", "3-3"]]
    # A compacted object over a quarter of the bound is done: it is not merged again.
    assert planned([held(0, 1, size=30), held(2), held(3)]) == [["2-2", "3-3"]]


def test_deletions_wait_for_the_grace_and_never_touch_a_late_or_crossing_node() -> None:
    parts = [held(n, mtime=100) for n in range(4)]
    objects = by_node([*parts, held(0, 3, mtime=200)])["n1"]
    assert len(deletions(objects, now_ns=250, grace_ns=100).waiting) == 4
    assert [info.key for info in deletions(objects, now_ns=300, grace_ns=100).delete] == [p.key for p in parts]
    # A part newer than the compacted object covering it was not in it: kept, and said.
    straggler = ObjectInfo(layout.part_key("events", REF, "n1", SEQ[1] + "a"), 10, 250)  # sorts inside 0..3
    found = deletions(by_node([*parts, held(0, 3, mtime=200), straggler])["n1"], 1000, 100)
    assert found.late == [straggler] and straggler not in found.delete and len(found.delete) == 4
    # Two compacted objects that cross: nothing of the node is deleted.
    crossing = by_node([*parts, held(0, 2, mtime=200), held(1, 3, mtime=200)])["n1"]
    found = deletions(crossing, 1000, 100)
    assert found.delete == [] and len(found.overlapping) == 1


# --- which sessions, and a dry run --------------------------------------------------------------


def test_a_running_session_is_left_alone(storage: Storage) -> None:
    running = layout.SessionRef("team-a", "train", "session_2026-11-29_08-00-00_000000_1")
    write(storage)
    write(storage, running)
    storage.delete(layout.closed_key(running))
    marker_key = next(i.key for i in storage.list(layout.session_prefix(running) + "nodes/"))
    marker = documents.decode(storage.get(marker_key), documents.NodeMarker)
    storage.put(marker_key, documents.encode(msgspec.structs.replace(marker, final=False)))
    untouched = [item for item in listing(storage) if running.session in item[0]]

    report = Compactor(storage, grace_s=0).run()

    found = {session.session: session for session in report.sessions}
    assert found[running.session].skipped is not None and "running" in found[running.session].skipped
    assert found[running.session].kinds == []
    assert [item for item in listing(storage) if running.session in item[0]] == untouched
    assert found[REF.session].skipped is None and found[REF.session].kinds[0].written


def test_a_session_retention_deletes_is_left_alone(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    write(storage)
    decided = documents.Retention(deleted=documents.ExpiredKind(1, 2, "max_age 30d"))
    storage.put(layout.retention_key(REF), documents.encode(decided))
    before = listing(storage)
    assert Compactor(storage, grace_s=0).run().sessions[0].skipped == "retention deletes this session"
    assert listing(storage) == before


def test_a_dry_run_changes_nothing_and_says_what_applying_does(storage: Storage, tmp_path: Path) -> None:
    write(storage)
    with serve(storage, tmp_path / "cache") as client:  # a snapshot in the archive, to be kept current
        client.get(f"/api/v1/sessions/{REF.path}/tasks")
        client.app.state.history.sessions.snapshots.wait_written()  # type: ignore[attr-defined]
    before = listing(storage)

    dry = Compactor(storage, grace_s=0, dry_run=True).run()

    assert listing(storage) == before
    applied = Compactor(storage, grace_s=0).run()
    assert figures(dry) == figures(applied)
    assert dry.sessions[0].snapshot_updated and dry.sessions[0].kinds[0].written


# --- killed, doubled ----------------------------------------------------------------------------


class Killed(Exception):
    pass


def kill_after_puts(count: int) -> Callable[[Progress], None]:
    """A progress callback that stops the run once `count` compacted objects are in: killed between the puts
    and the deletions."""
    seen = []

    def progress(step: Progress) -> None:
        if step.written:
            seen.append(step.written)
            if len(seen) == count:
                raise Killed(step.written)

    return progress


def test_a_run_killed_between_put_and_delete_converges(storage: Storage, tmp_path: Path) -> None:
    write(storage)
    before = all_rows(storage)
    reference = open_storage(str(tmp_path / "reference"))  # the same session, compacted in one go
    write(reference)
    Compactor(reference, grace_s=0).run()

    parts = data_keys(storage)
    with pytest.raises(Killed):
        Compactor(storage, grace_s=0, progress=kill_after_puts(1), jobs=2).run()

    # Killed at its first put: the group being rewritten on the other thread may put its object too, those not
    # begun do not, and nothing is deleted.
    compacted = len([key for key in data_keys(storage) if "/compacted-" in key])
    assert 1 <= compacted <= 2 < len([key for key in data_keys(reference) if "/compacted-" in key])
    assert set(data_keys(storage)) >= set(parts)
    after = all_rows(storage)
    assert all(after[where].equals(table) for where, table in before.items())  # each row once meanwhile

    Compactor(storage, grace_s=0).run()

    assert data_keys(storage) == data_keys(reference)
    assert all(storage.get(key) == reference.get(key) for key in data_keys(storage))
    assert Compactor(storage, grace_s=0).run().sessions[0].kinds[0].written == []


def test_two_compactors_at_once(storage: Storage, tmp_path: Path) -> None:
    write(storage)
    before = all_rows(storage)
    reference = open_storage(str(tmp_path / "reference"))
    write(reference)
    Compactor(reference, grace_s=0).run()
    expected_rows = {where: table.num_rows for where, table in before.items()}
    reads: list[dict[tuple[str, str], int]] = []
    done = threading.Event()

    def reader() -> None:  # reads while both compactors put
        while not done.is_set():
            reads.append({where: table.num_rows for where, table in all_rows(storage).items()})

    def both(**options: Any) -> list[CompactionReport]:
        reports: list[CompactionReport] = []
        runs = [threading.Thread(target=lambda: reports.append(Compactor(storage, **options).run())) for _ in "ab"]
        for run in runs:
            run.start()
        for run in runs:
            run.join()
        return reports

    watcher = threading.Thread(target=reader)
    watcher.start()
    try:
        puts = both(grace_s=3600, quiet_s=0)
    finally:
        done.set()
        watcher.join()
    assert reads and all(read == expected_rows for read in reads)
    assert len(puts) == 2 and not any(s.error for r in puts for s in r.sessions)
    # Then both delete at once, past the grace.
    deletes = both(grace_s=3600, clock_ns=later(2))
    assert len(deletes) == 2 and not any(s.error for r in deletes for s in r.sessions)
    assert data_keys(storage) == data_keys(reference)
    after = all_rows(storage)
    assert all(after[where].equals(table) for where, table in before.items())


def test_two_compactors_at_once_without_a_grace(tmp_path: Path) -> None:
    """With no grace one deletes parts the other may still be reading: that one leaves its group for the next
    run, and a third run finishes the same as one run alone."""
    storage = open_storage(str(tmp_path / "archive"))
    write(storage, rows_per_part=80)
    before = all_rows(storage)
    reference = open_storage(str(tmp_path / "reference"))
    write(reference, rows_per_part=80)
    Compactor(reference, grace_s=0).run()

    reports: list[CompactionReport] = []
    runs = [threading.Thread(target=lambda: reports.append(Compactor(storage, grace_s=0).run())) for _ in "ab"]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert len(reports) == 2 and not any(s.error for r in reports for s in r.sessions)
    Compactor(storage, grace_s=0).run()

    assert data_keys(storage) == data_keys(reference)
    after = all_rows(storage)
    assert all(after[where].equals(table) for where, table in before.items())


# --- the command ----------------------------------------------------------------------------------


def test_the_compact_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = open_storage(str(tmp_path / "archive"))
    write(storage)
    before = listing(storage)
    archive = ["--archive", str(tmp_path / "archive")]

    dry = CliRunner().invoke(main, ["compact", *archive, "--grace", "0", "--dry-run", "--format", "json"])

    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] and listing(storage) == before
    (session,) = planned["sessions"]
    assert session["session"] == REF.session and [k["kind"] for k in session["kinds"]] == list(KINDS)
    assert all(k["parts_after"] < k["parts_before"] and k["written"] for k in session["kinds"])

    monkeypatch.setenv("RAY_HISTORY_COMPACT_GRACE", "0")
    applied = CliRunner().invoke(main, ["compact", *archive, "--session", REF.path, "--max-bytes", "1GiB"])

    assert applied.exit_code == 0, applied.output
    for kind in session["kinds"]:
        line = next(line for line in applied.stdout.splitlines() if f" {kind['kind']} " in line)
        assert f"{kind['parts_before']} -> {kind['parts_after']}" in line
    assert "wrote compacted-" in applied.stderr  # progress while it runs
    assert len(data_keys(storage)) == sum(k["parts_after"] for k in session["kinds"])

    wrong = CliRunner().invoke(main, ["compact", *archive, "--grace", "an hour"])
    assert wrong.exit_code == 2 and "not a duration" in wrong.output
    wrong = CliRunner().invoke(main, ["compact", *archive, "--session", "just-a-name"])
    assert wrong.exit_code == 2 and "namespace/cluster/session" in wrong.output
