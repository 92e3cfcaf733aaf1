"""The job index across restarts and replicas (issue 14): its DuckDB file under --cache-dir, and the archive's job
index objects (`jobindex/{namespace}.parquet`) from which a replica with an empty cache fills it. Three real
sessions (bench.archive_synth, in three namespaces, as the authentication tests have them) indexed once by a
first replica; every store call of the others recorded by a wrapper around the real storage. No Ray.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest
from fastapi.testclient import TestClient

from archive import documents, job_index, layout
from archive.storage import ObjectInfo, Storage, open_storage
from historyserver.app import create_app
from historyserver.jobindex import JobIndex, JobQuery
from historyserver.server import JOBS_FILE, HistoryServer, ServerSettings

from .auth_archive import SEES, SESSIONS, A, B, access_settings, bearer, build_archive

# The searches a replica must answer as the first one does: filters, sorts and pages of every kind.
SEARCHES = (
    JobQuery(limit=1000), JobQuery(include_hidden=True, limit=1000), JobQuery(status="FAILED"),
    JobQuery(namespace=B.namespace), JobQuery(entrypoint="PY"), JobQuery(sort="start_time_ms", limit=2, offset=1),
    JobQuery(sort="-duration_ms"), JobQuery(namespaces=frozenset({A.namespace})),
)  # fmt: skip


class Recording:
    """A real storage that records every call (method, key or prefix)."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.supports_tags = inner.supports_tags
        self.calls: list[tuple[str, str]] = []

    def put(self, key: str, data: bytes, tags: Mapping[str, str] | None = None) -> None:
        self.calls.append(("put", key))
        self.inner.put(key, data, tags)

    def get(self, key: str) -> bytes:
        self.calls.append(("get", key))
        return self.inner.get(key)

    def list(self, prefix: str = "", **options: Any) -> Iterator[ObjectInfo]:
        self.calls.append(("list", prefix))
        return self.inner.list(prefix, **options)

    def delete(self, key: str) -> None:
        self.calls.append(("delete", key))
        self.inner.delete(key)

    def get_tags(self, key: str) -> dict[str, str]:
        return self.inner.get_tags(key)

    def of(self, *prefixes: str) -> list[tuple[str, str]]:
        return [(method, key) for method, key in self.calls if key.startswith(prefixes)]


def replica(storage: Storage, cache: Path) -> HistoryServer:
    """A started server whose job index is filled by calling index_ended_sessions; objects written at once."""
    server = HistoryServer(storage, ServerSettings(cache_dir=cache, refresh_interval=3600, index_jobs=False,
                                                   catalog_index_interval=0))  # fmt: skip
    server.start()
    return server


def shut(server: HistoryServer) -> None:
    """As a process that ends: its files closed."""
    server.sessions.snapshots.wait_written()
    server.stop()
    server.jobs.close()
    server.catalog.close()


def answers(server: HistoryServer) -> list[tuple[int, list[dict[str, Any]]]]:
    return [server.jobs.list_jobs(query) for query in SEARCHES]


@dataclass(frozen=True)
class Template:
    root: Path  # the auth file's folder
    archive: Path  # after the first replica: snapshots written back, job index objects published
    cache: Path  # the first replica's cache
    answers: list[tuple[int, list[dict[str, Any]]]]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    root = tmp_path_factory.mktemp("jobindex-persist")
    build_archive(root)
    first = replica(open_storage(str(root / "archive")), root / "cache")
    assert first.index_ended_sessions() == len(SESSIONS)
    found = answers(first)
    assert found[0][0] > 0 and found[2][0] > 0  # jobs, failed ones among them
    shut(first)
    keys = {info.key for info in open_storage(str(root / "archive")).list(layout.JOB_INDEX_PREFIX)}
    assert keys == {layout.job_index_key(ref.namespace) for ref in SESSIONS}
    return Template(root, root / "archive", root / "cache", found)


def copied(template: Template, tmp_path: Path, cache: bool) -> tuple[Recording, Path]:
    """A copy of the archive for one test to change, with an empty cache; or, with `cache`, the archive itself
    and a copy of the first replica's cache (a cache file is of one archive: another place is another archive)."""
    if cache:
        shutil.copytree(template.cache, tmp_path / "cache")
        return Recording(open_storage(str(template.archive))), tmp_path / "cache"
    shutil.copytree(template.archive, tmp_path / "archive")
    return Recording(open_storage(str(tmp_path / "archive"))), tmp_path / "cache"


JOB_TABLES = ("snapshots/", "events/")  # where indexing a session one by one reads


def test_a_restart_reads_no_session_again_and_writes_nothing(template: Template, tmp_path: Path) -> None:
    storage, cache = copied(template, tmp_path, cache=True)
    server = replica(storage, cache)
    assert server.jobs.restored and server.jobs.sessions_indexed() == len(SESSIONS)
    assert answers(server) == template.answers  # before any pass: what the last run indexed
    storage.calls.clear()
    assert server.index_ended_sessions() == 0
    # No jobs table, no parts listing, not even the index objects; and nothing written (they still hold).
    assert storage.of(*JOB_TABLES, layout.JOB_INDEX_PREFIX) == []
    assert answers(server) == template.answers
    shut(server)


def test_a_pass_with_no_session_changed_since_a_complete_one_reads_nothing(
    template: Template, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, cache = copied(template, tmp_path, cache=True)
    server = replica(storage, cache)
    server.index_ended_sessions()  # complete: every ended session indexed
    reads: list[tuple[str, ...]] = []
    rows_by_status = server.catalog.rows_by_status
    monkeypatch.setattr(server.catalog, "rows_by_status", lambda *args: reads.append(args[0]) or rows_by_status(*args))
    assert server.index_ended_sessions() == 0 and reads == [], "nothing changed: the catalog is not read again"
    server.catalog.generation += 1  # as a refresh that changed a session's row does
    assert server.index_ended_sessions() == 0 and reads, "a change: the pass looks again"
    shut(server)


def test_a_new_replica_fills_its_job_index_from_the_index_objects(template: Template, tmp_path: Path) -> None:
    storage, cache = copied(template, tmp_path, cache=False)
    server = replica(storage, cache)
    assert not server.jobs.restored
    storage.calls.clear()
    assert server.index_ended_sessions() == len(SESSIONS)
    namespaces = {ref.namespace for ref in SESSIONS}
    assert storage.of(*JOB_TABLES) == []
    assert sorted(storage.of(layout.JOB_INDEX_PREFIX)) == sorted(
        [("list", layout.JOB_INDEX_PREFIX)] + [("get", layout.job_index_key(ns)) for ns in namespaces]
    )  # read, and not written again: the same sessions from the same snapshots
    assert answers(server) == template.answers
    # Its file keeps what it read: its own restart reads nothing.
    shut(server)
    storage.calls.clear()
    again = replica(storage, cache)
    assert again.index_ended_sessions() == 0 and storage.of(*JOB_TABLES, layout.JOB_INDEX_PREFIX) == []
    assert answers(again) == template.answers
    shut(again)


def test_a_session_retention_deleted_is_not_indexed_from_an_object_that_still_names_it(
    template: Template, tmp_path: Path
) -> None:
    storage, cache = copied(template, tmp_path, cache=False)
    deleted = documents.ExpiredKind(at_ms=1, delete_after_ms=2, reason="sessions older than 90 days")
    storage.put(layout.retention_key(B), documents.encode(documents.Retention(deleted=deleted)))
    assert B.path in job_index.decode_index(B.namespace, storage.get(layout.job_index_key(B.namespace)))
    server = replica(storage, cache)
    assert server.index_ended_sessions() == len(SESSIONS) - 1
    assert B.path not in server.jobs.paths()
    assert server.jobs.list_jobs(JobQuery(namespace=B.namespace, include_hidden=True)) == (0, [])
    # Its namespace has no session left: the object goes too, so no later replica reads it.
    assert ("delete", layout.job_index_key(B.namespace)) in storage.calls
    assert {info.key for info in storage.inner.list(layout.JOB_INDEX_PREFIX)} == {
        layout.job_index_key(ref.namespace) for ref in SESSIONS if ref != B}  # fmt: skip
    shut(server)


def test_rows_of_a_session_that_ended_otherwise_are_not_taken_from_an_object(template: Template,
                                                                             tmp_path: Path) -> None:  # fmt: skip
    storage, cache = copied(template, tmp_path, cache=False)
    closed = documents.decode(storage.get(layout.closed_key(A)), documents.Closed)
    later = msgspec.structs.replace(closed, closed_at_ms=closed.closed_at_ms + 60_000)
    storage.put(layout.closed_key(A), documents.encode(later))
    server = replica(storage, cache)
    storage.calls.clear()
    assert server.index_ended_sessions() == len(SESSIONS)
    # A was indexed from the archive again (its snapshot, for the end the catalog now says), the others from objects.
    assert {key.split("/")[1] for _, key in storage.of("snapshots/", "events/")} == {A.namespace}
    assert server.jobs.indexed(A.path).end_ns == later.closed_at_ms * 1_000_000  # type: ignore[union-attr]
    # Its namespace's object is written again, with the new source.
    written = job_index.decode_index(A.namespace, storage.get(layout.job_index_key(A.namespace)))
    assert written[A.path].end_ns == later.closed_at_ms * 1_000_000
    shut(server)


def test_a_corrupt_job_index_file_is_rebuilt(template: Template, tmp_path: Path) -> None:
    storage, cache = copied(template, tmp_path, cache=True)
    (cache / JOBS_FILE).write_bytes(b"not a DuckDB file" * 100)
    server = replica(storage, cache)
    assert not server.jobs.restored
    assert server.index_ended_sessions() == len(SESSIONS)  # from the index objects
    assert answers(server) == template.answers
    shut(server)
    reopened = JobIndex(cache / JOBS_FILE, storage.uri)
    assert reopened.restored and reopened.sessions_indexed() == len(SESSIONS)
    reopened.close()


def test_a_job_index_file_of_another_archive_or_version_starts_empty(template: Template, tmp_path: Path) -> None:
    uri = open_storage(str(template.archive)).uri
    for made_for in ({"archive": "s3://another-bucket/archive"}, {"version": "0"}):
        database = tmp_path / f"{next(iter(made_for))}.duckdb"
        shutil.copy(template.cache / JOBS_FILE, database)
        with duckdb.connect(str(database)) as db:
            db.executemany("UPDATE jobindex_meta SET value = ? WHERE name = ?", [(v, k) for k, v in made_for.items()])
        index = JobIndex(database, uri)
        assert not index.restored and index.list_jobs(JobQuery(include_hidden=True)) == (0, [])
        index.close()
        assert JobIndex(database, uri).restored is False  # rebuilt empty, now of this archive and version


@pytest.mark.parametrize("name", ["alice", "bob", "admin", "eve"])
def test_a_viewer_sees_only_its_namespaces_on_a_replica_started_from_the_objects(
    template: Template, tmp_path: Path, name: str
) -> None:
    storage, cache = copied(template, tmp_path, cache=False)
    server = replica(storage, cache)
    server.index_ended_sessions()
    client = TestClient(create_app(server, access_settings(template.root)), client=("203.0.113.9", 41000))
    everyone = client.get("/api/v1/jobs", params={"limit": 1000}, headers=bearer("admin")).json()
    own = {ref.namespace for ref in SEES[name]}
    answer = client.get("/api/v1/jobs", params={"limit": 1000}, headers=bearer(name)).json()
    assert answer["items"] == [job for job in everyone["items"] if job["namespace"] in own]
    assert answer["total"] == len(answer["items"]) and answer["sessions_indexed"] == len(SEES[name])
    for ref in set(SESSIONS) - SEES[name]:
        other = client.get("/api/v1/jobs", params={"namespace": ref.namespace}, headers=bearer(name)).json()
        assert other["total"] == 0 and other["items"] == []
    shut(server)
