"""The history server's side of retention, on a local archive and on a real S3 server (SeaweedFS).

Retention writes `sessions/.../retention.json` first and deletes objects after a grace (the cleaner's
order: a deleted session's objects of every kind, then its other documents, the retention document last;
for expired kinds, only those kinds' objects). These tests write that document and delete the objects in
that order themselves, over sessions made by bench.archive_synth (real parts, as collectors leave them):
a deleted session vanishes from every surface at once, a reader never sees a 500 or half a session while
the objects go, an expired events kind never erases or replaces the snapshot, expired logs and metrics say
so, and a snapshot is never overwritten by one derived from fewer parts.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from archive import changes, documents, layout
from archive.storage import S3Options, Storage
from archive.storage.local import LocalStorage
from archive.storage.s3 import S3Storage
from bench.archive_synth import write_session
from historyserver.app import create_app
from historyserver.catalog import STATUSES, Catalog, SessionQuery
from historyserver.mirror import Mirror
from historyserver.server import HistoryServer, ServerSettings, session_end
from historyserver.snapshots import SnapshotStore

from .objectstores import SeaweedFS, seaweedfs_server
from .uiserver import served

BUCKET = "retention-test"
START_MS = 1_795_892_637_151
REF = layout.SessionRef("ml", "rc-retention", "session_2026-11-28_19-03-57_108652_5250")
OTHER = layout.SessionRef("ml", "rc-other", "session_2026-11-29_08-00-00_000001_1")
DECIDED_MS = 1_796_104_800_000  # 2026-12-01 06:00 UTC
GRACE_MS = 3_600_000
REASON = {"events": "raw events older than 30 days", "logs": "logs older than 14 days",
          "metrics": "metrics older than 60 days", "snapshots": "snapshots older than 365 days"}  # fmt: skip
RETENTION_FIELDS = ("expired_kinds", "expired", "retention")


# --- the archive -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two ended sessions of a few thousand tasks each, with logs and metrics, in a local folder."""
    root = tmp_path_factory.mktemp("template") / "archive"
    storage = LocalStorage(root)
    for seed, ref in enumerate((REF, OTHER), start=7):
        write_session(storage, ref, 3000, seed=seed, nodes=3, start_ms=START_MS + seed * 3_600_000,
                      duration_s=120, rows_per_part=2000, logs=True, metrics=True)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    with seaweedfs_server(tmp_path_factory.mktemp("seaweedfs")) as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture(params=["local", "seaweedfs"])
def archive(request: pytest.FixtureRequest, template: Path, tmp_path: Path) -> Storage:
    """A fresh copy of the template: a folder, or a prefix of its own in SeaweedFS's bucket."""
    if request.param == "local":
        shutil.copytree(template, tmp_path / "archive")
        return LocalStorage(tmp_path / "archive")
    server: SeaweedFS = request.getfixturevalue("seaweed")
    options = S3Options(endpoint_url=server.endpoint_url, region="us-east-1", access_key=server.access_key,
                        secret_key=server.secret_key)  # fmt: skip
    storage = S3Storage(BUCKET, f"t-{uuid.uuid4().hex[:12]}/archive", options)
    source = LocalStorage(template)
    for info in source.list(""):
        storage.put(info.key, source.get(info.key))
    return storage


def mark(storage: Storage, ref: layout.SessionRef, *, deleted: bool = False, expired: tuple[str, ...] = ()) -> None:
    """What the cleaner writes first: the retention document."""

    def decided(reason: str) -> documents.ExpiredKind:
        return documents.ExpiredKind(at_ms=DECIDED_MS, delete_after_ms=DECIDED_MS + GRACE_MS, reason=reason)

    retention = documents.Retention(
        deleted=decided("sessions older than 90 days") if deleted else None,
        expired={kind: decided(REASON[kind]) for kind in expired},
    )
    storage.put(layout.retention_key(ref), documents.encode(retention), tags=layout.object_tags("sessions", ref))
    changes.record(storage, ref)  # as the cleaner does: the server's next refresh reads the journal


def cleaner_order(storage: Storage, ref: layout.SessionRef, kinds: tuple[str, ...], deleted: bool) -> list[str]:
    """The keys the cleaner deletes after the grace, in its order: the kinds' objects; for a deleted session,
    then its other documents and the retention document last."""
    keys = [info.key for kind in kinds for info in storage.list(f"{kind}/{ref.path}/")]
    if deleted:
        documents_ = [info.key for info in storage.list(layout.session_prefix(ref))]
        keys += [key for key in documents_ if key != layout.retention_key(ref)] + [layout.retention_key(ref)]
    return keys


def snapshot_objects(storage: Storage, ref: layout.SessionRef) -> dict[str, bytes]:
    return {info.key: storage.get(info.key) for info in storage.list(f"snapshots/{ref.path}/")}


# --- the server ------------------------------------------------------------------------------------


def history_server(storage: Storage, cache: Path, **settings: Any) -> HistoryServer:
    settings = {"refresh_interval": 3600, "index_jobs": False, **settings}
    return HistoryServer(storage, ServerSettings(cache_dir=cache, **settings))


@pytest.fixture
def open_server(tmp_path: Path) -> Iterator[Callable[[Storage], tuple[HistoryServer, TestClient]]]:
    """Starts in-process servers over an archive, each with an empty cache of its own; stopped at the end."""
    started: list[TestClient] = []

    def start(storage: Storage) -> tuple[HistoryServer, TestClient]:
        history = history_server(storage, tmp_path / f"cache-{len(started)}")
        client = TestClient(create_app(history))
        client.__enter__()
        started.append(client)
        return history, client

    yield start
    for client in started:
        client.__exit__(None, None, None)


def api(ref: layout.SessionRef, tail: str = "") -> str:
    return f"/api/v1/sessions/{ref.path}{tail}"


def ray(ref: layout.SessionRef, tail: str) -> str:
    return f"/ray/{ref.path}{tail}"


def ok(client: TestClient | httpx.Client, path: str, **params: Any) -> Any:
    answer = client.get(path, params=params)
    assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return answer.json()


def without_retention(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key not in RETENTION_FIELDS}


def sql_sessions(client: TestClient, view: str) -> set[str]:
    """The sessions a view of the SQL over the whole archive holds rows of."""
    answer = ok(client, "/api/v1/sql", q=f"SELECT DISTINCT session FROM {view}")
    return {row[0] for row in answer["rows"]}


SQL_VIEWS = ("sessions", "jobs", "tasks", "actors", "nodes", "workers", "events", "logs", "metrics")


def views_of(client: TestClient, ref: layout.SessionRef) -> dict[str, Any]:
    """What the session's pages answer (retention's own fields left out)."""
    return {
        "session": without_retention(ok(client, api(ref))),
        "tasks": ok(client, api(ref, "/tasks"), limit=200, sort="-duration_ms"),
        "jobs": ok(client, api(ref, "/jobs")),
        "actors": ok(client, api(ref, "/actors")),
        "nodes": ok(client, api(ref, "/nodes")),
        "workers": ok(client, api(ref, "/workers"), limit=1000),
        "ray_tasks": ok(client, ray(ref, "/api/v0/tasks"), limit=200),
        "ray_jobs": ok(client, ray(ref, "/api/jobs/")),
    }


def rederived(views: dict[str, Any]) -> dict[str, Any]:
    """`views_of` as two derivations from the same parts agree on it: the failure summary's example message
    is any one of them, and rows that tie keep no order."""
    summary = views["session"]["summary"]
    failed = [{**row, "error_message": None} for row in summary["most_failed"]]
    return {
        **views,
        "session": {**views["session"], "summary": {**summary, "most_failed": failed}},
        "tasks": {**views["tasks"], "items": by_attempt(views["tasks"]["items"])},
        "ray_tasks": by_attempt(views["ray_tasks"]["data"]["result"]["result"]),
    }


def by_attempt(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(tasks, key=lambda task: (task["task_id"], task["attempt_number"]))


# --- a deleted session ------------------------------------------------------------------------------


def test_a_deleted_session_vanishes_from_every_surface_at_once(archive: Storage, open_server) -> None:
    history, client = open_server(archive)
    for ref in (REF, OTHER):
        ok(client, api(ref))
    history.sessions.snapshots.wait_written()
    history.index_ended_sessions()
    first_job = ok(client, api(REF, "/jobs"))["items"][0]["job_id"]
    node_id = ok(client, api(REF, "/nodes"))["items"][0]["node_id"]
    assert {REF.session, OTHER.session} <= {row["session"] for row in ok(client, "/api/v1/sessions")["items"]}
    assert all(sql_sessions(client, view) == {REF.session, OTHER.session} for view in SQL_VIEWS)
    assert ok(client, "/api/v1/jobs", cluster=REF.cluster)["total"] > 0

    mark(archive, REF, deleted=True)
    history.refresh()

    listed = ok(client, "/api/v1/sessions")
    assert [row["session"] for row in listed["items"]] == [OTHER.session] and listed["total"] == 1
    assert ok(client, "/api/v1/sessions", text=REF.cluster)["total"] == 0
    unknown = client.get(api(layout.SessionRef(REF.namespace, REF.cluster, "session_nope")))
    for path in (api(REF), api(REF, "/tasks"), api(REF, "/logs"), api(REF, "/metrics"), api(REF, "/timeline"),
                 api(REF, f"/jobs/{first_job}"), api(REF, "/sql") + "?q=SELECT+1", ray(REF, "/api/v0/tasks"),
                 ray(REF, "/api/jobs/"), ray(REF, f"/api/v0/logs?node_id={node_id}"), ray(REF, "/nodes?view=summary"),
                 ray(REF, "/api/version")):  # fmt: skip
        answer = client.get(path)
        assert answer.status_code == unknown.status_code == 404, path
        assert answer.json() == {"error": f"no session {REF.path} in the archive"}, path
    assert ok(client, "/api/v1/jobs", cluster=REF.cluster)["total"] == 0
    assert {job["session"] for job in ok(client, "/api/v1/jobs", limit=1000)["items"]} == {OTHER.session}
    assert all(sql_sessions(client, view) == {OTHER.session} for view in SQL_VIEWS)
    assert client.get("/api/v1/sql", params={"q": "SELECT 1", "session": REF.path}).status_code == 404
    page = client.get(f"/sessions/{REF.path}", headers={"accept": "text/html"})
    assert page.status_code == 404 and f"no session {REF.path} in the archive" in page.text
    listing = client.get("/sessions", headers={"accept": "text/html"})
    assert listing.status_code == 200 and REF.cluster not in listing.text and OTHER.cluster in listing.text
    # Its open session and index entry are gone too, not only hidden behind the catalog.
    assert REF.path not in history.jobs.paths()
    assert REF not in history.sessions._open

    # Until the cleaner has deleted everything, and after, the session stays gone; the other one answers.
    for key in cleaner_order(archive, REF, ("events", "logs", "metrics", "snapshots"), deleted=True):
        archive.delete(key)
    history.refresh()
    assert client.get(api(REF)).status_code == 404 and ok(client, "/api/v1/sessions")["total"] == 1
    assert list(archive.list(f"snapshots/{REF.path}/")) == [] and ok(client, api(OTHER, "/tasks"))["total"] > 0


# --- a reader while the cleaner deletes -------------------------------------------------------------


def hammer(base: str, paths: list[str], stop: threading.Event, seen: list[tuple[str, int, str]]) -> None:
    """Ask every path in turn, again and again, until stopped; every answer is kept."""
    with httpx.Client(base_url=base, timeout=60, headers={"accept": "application/json"}) as client:
        while not stop.is_set():
            for path in paths:
                answer = client.get(path)
                seen.append((path, answer.status_code, answer.text))


READER_PATHS = [api(REF), api(REF, "/tasks?limit=100"), api(REF, "/logs"), api(REF, "/metrics"),
                ray(REF, "/api/v0/tasks?limit=100"), f"/sessions/{REF.path}"]  # fmt: skip


def run_cleaner_under_reader(archive: Storage, cache: Path, kinds: tuple[str, ...], deleted: bool,
                             ) -> tuple[dict[str, tuple[int, str]], list[tuple[str, int, str]]]:  # fmt: skip
    """A served server refreshing every 0.2 s, a reader hammering it, and the cleaner at work: the document,
    a grace of several refreshes, then the objects one by one. (baseline answers, every answer seen)."""
    with served(archive, cache, refresh_interval=0.2) as base:
        with httpx.Client(base_url=base, timeout=60) as client:
            answers = {path: client.get(path) for path in READER_PATHS}
            baseline = {path: (answer.status_code, answer.text) for path, answer in answers.items()}
        stop, seen = threading.Event(), []
        reader = threading.Thread(target=hammer, args=(base, READER_PATHS, stop, seen), daemon=True)
        reader.start()
        try:
            time.sleep(0.5)
            mark(archive, REF, deleted=deleted, expired=kinds if not deleted else ())
            time.sleep(1.5)  # the grace: longer than a refresh and a request
            for key in cleaner_order(archive, REF, kinds, deleted):
                archive.delete(key)
                time.sleep(0.02)
            time.sleep(1.0)
        finally:
            stop.set()
            reader.join(timeout=120)
    return baseline, seen


def test_a_reader_never_gets_a_500_or_half_a_deleted_session(archive: Storage, tmp_path: Path) -> None:
    baseline, seen = run_cleaner_under_reader(archive, tmp_path / "cache", ("events", "logs", "metrics",
                                                                            "snapshots"), deleted=True)  # fmt: skip
    assert all(status == 200 for status, _ in baseline.values())
    for path, status, text in seen:
        assert status in (200, 404), (path, status, text[:300])
        if status == 200:
            assert text == baseline[path][1], f"{path}: an answer that is not the whole session"
        elif not path.startswith("/sessions/"):
            assert text == f'{{"error":"no session {REF.path} in the archive"}}', (path, text)
    statuses = [status for _, status, _ in seen]
    assert 200 in statuses and statuses[-len(READER_PATHS) :] == [404] * len(READER_PATHS)


def test_a_reader_never_gets_a_500_or_half_a_session_while_its_events_and_logs_expire(
    archive: Storage, tmp_path: Path
) -> None:
    baseline, seen = run_cleaner_under_reader(archive, tmp_path / "cache", ("events", "logs"), deleted=False)
    expired_logs = 0
    for path, status, text in seen:
        assert status == 200, (path, status, text[:300])
        if path == api(REF, "/logs") and text != baseline[path][1]:
            answer = httpx.Response(200, text=text).json()
            assert (answer["total"], answer["items"], answer["expired"]["kind"]) == (0, [], "logs")
            expired_logs += 1
        elif path == api(REF):  # the session's summary stays whole: it comes from the snapshot
            answer, before = httpx.Response(200, text=text).json(), httpx.Response(200, text=baseline[path][1]).json()
            assert without_retention(answer) == without_retention(before)
        elif path != f"/sessions/{REF.path}":  # the page gains a note; its data is the summary above
            assert text == baseline[path][1], f"{path}: an answer that is not the whole session"
    assert expired_logs > 0 and seen[-1][1] == 200


# --- expired kinds ----------------------------------------------------------------------------------


def test_an_expired_events_kind_never_erases_or_replaces_the_snapshot(archive: Storage, open_server) -> None:
    history, client = open_server(archive)
    before = views_of(client, REF)
    history.sessions.snapshots.wait_written()
    stored = snapshot_objects(archive, REF)
    assert layout.snapshot_manifest_key(REF) in stored
    jobs_before = ok(client, "/api/v1/jobs", cluster=REF.cluster, limit=1000)["total"]

    mark(archive, REF, expired=("events",))
    history.refresh()
    parts = cleaner_order(archive, REF, ("events",), deleted=False)
    assert len(parts) > 4
    for count, key in enumerate(parts, start=1):
        archive.delete(key)
        if count in (len(parts) // 2, len(parts)):  # half gone, then all gone: a fresh server each time
            fresh, fresh_client = open_server(archive)
            assert views_of(fresh_client, REF) == before
            # The timeline's spans cannot come from nothing: derived for this open only, never written.
            assert isinstance(ok(fresh_client, api(REF, "/timeline")), list)
            fresh.index_ended_sessions()
            assert ok(fresh_client, "/api/v1/jobs", cluster=REF.cluster, limit=1000)["total"] == jobs_before
            fresh.sessions.snapshots.wait_written()
            assert snapshot_objects(archive, REF) == stored
            assert ok(fresh_client, api(REF, "/events"))["expired"]["kind"] == "events"
    assert list(archive.list(f"events/{REF.path}/")) == []
    assert views_of(client, REF) == before  # the server that had it open all along
    session = ok(client, api(REF))
    assert session["expired_kinds"] == ["events"] and session["retention"][0]["reason"] == REASON["events"]


def test_a_snapshot_is_not_overwritten_from_fewer_parts(archive: Storage, open_server) -> None:
    """A bucket rule (no retention document) deleted some events parts: the snapshot knows more, and stays."""
    history, client = open_server(archive)
    before = views_of(client, REF)
    history.sessions.snapshots.wait_written()
    stored = snapshot_objects(archive, REF)
    parts = cleaner_order(archive, REF, ("events",), deleted=False)
    for key in parts[: len(parts) // 2]:
        archive.delete(key)
    fresh, fresh_client = open_server(archive)
    assert views_of(fresh_client, REF) == before
    assert isinstance(ok(fresh_client, api(REF, "/timeline")), list)
    fresh.sessions.snapshots.wait_written()
    assert fresh.sessions.snapshots.derived == 1  # the timeline's spans only, for that open
    assert snapshot_objects(archive, REF) == stored


def test_expired_logs_and_metrics_say_so_in_the_api(archive: Storage, open_server) -> None:
    history, client = open_server(archive)
    node = ok(client, api(REF, "/nodes"))["items"][0]["node_id"]
    files = ok(client, api(REF, "/logs"))
    assert files["expired"] is None and files["total"] > 0
    assert ok(client, api(REF, "/metrics"))["expired"] is None
    file = next(item for item in files["items"] if item["node_id"] == node and item["size_bytes"])
    task = ok(client, api(REF, "/tasks"), limit=1)["items"][0]["task_id"]
    where = {"node_id": node, "filename": file["filename"]}

    mark(archive, REF, expired=("logs", "metrics"))
    history.refresh()
    message = re.compile(r"^Logs of this session expired on 2026-12-01 under the retention policy \(logs older "
                         r"than 14 days\)$")  # fmt: skip
    logs = ok(client, api(REF, "/logs"))
    assert (logs["total"], logs["items"], logs["nodes"], logs["jobs"]) == (0, [], [], [])
    assert message.match(logs["expired"]["message"]) and logs["expired"]["at_ms"] == DECIDED_MS
    assert logs["expired"]["delete_after_ms"] == DECIDED_MS + GRACE_MS
    metrics = ok(client, api(REF, "/metrics"))
    assert (metrics["total"], metrics["expired"]["kind"]) == (0, "metrics")
    assert metrics["expired"]["message"].startswith("Metrics of this session expired on 2026-12-01")
    chart = ok(client, api(REF, "/metrics/query"), name="ray_node_cpu_utilization")
    assert chart["series"] == [] and chart["expired"]["kind"] == "metrics"
    refused = [(api(REF, "/logs/lines"), where), (api(REF, "/logs/file"), where),
               (api(REF, "/logs/search"), {"pattern": "x"}), (api(REF, f"/tasks/{task}/logs"), {})]  # fmt: skip
    for path, params in refused:
        answer = client.get(path, params=params)
        assert answer.status_code == 410 and message.match(answer.json()["error"]), path
    assert ok(client, api(REF, f"/tasks/{task}"))["output_expired"]["kind"] == "logs"
    assert ok(client, api(REF))["summary"]["incomplete"]["ray_task_events_dropped"] is None
    # Ray's own API: `ray logs` and the dashboard's log viewer get the reason, not an empty file.
    listed = client.get(ray(REF, "/api/v0/logs"), params={"node_id": node})
    assert listed.status_code == 410 and message.match(listed.json()["msg"]) and listed.json()["result"] is False
    read = client.get(ray(REF, "/api/v0/logs/file"), params=where)
    assert read.status_code == 410 and message.match(read.text)
    by_task = client.get(ray(REF, "/api/v0/logs/file"), params={"task_id": task})
    assert by_task.status_code == 410 and message.match(by_task.text)
    # The session itself still answers in full, and says what it lost.
    row = ok(client, api(REF))
    assert row["expired_kinds"] == ["logs", "metrics"]
    assert [item["kind"] for item in row["retention"]] == row["expired_kinds"]
    assert ok(client, api(REF, "/tasks"))["total"] > 0
    listed_row = next(item for item in ok(client, "/api/v1/sessions")["items"] if item["session"] == REF.session)
    assert listed_row["expired_kinds"] == ["logs", "metrics"]
    assert set(listed_row["expired"]) == {"logs", "metrics"}


def test_an_expired_snapshot_is_derived_again_and_not_written_back(archive: Storage, open_server) -> None:
    history, client = open_server(archive)
    before = views_of(client, REF)
    history.sessions.snapshots.wait_written()
    stored = snapshot_objects(archive, REF)

    mark(archive, REF, expired=("snapshots",))
    fresh, fresh_client = open_server(archive)
    assert rederived(views_of(fresh_client, REF)) == rederived(before)
    fresh.sessions.snapshots.wait_written()
    assert fresh.sessions.snapshots.derived == 1  # the archived one is going: not read
    assert snapshot_objects(archive, REF) == stored  # nor rewritten
    for key in cleaner_order(archive, REF, ("snapshots",), deleted=False):
        archive.delete(key)
    last, last_client = open_server(archive)
    assert rederived(views_of(last_client, REF)) == rederived(before)
    assert ok(last_client, api(REF, "/timeline"))
    last.index_ended_sessions()
    last.sessions.snapshots.wait_written()
    assert list(archive.list(f"snapshots/{REF.path}/")) == []


# --- the pages, in a browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def expired_ui(captured_archive: Path, template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The captured session with its logs and metrics expired, and a synthetic one deleted, served."""
    root = tmp_path_factory.mktemp("expired-ui") / "archive"
    shutil.copytree(captured_archive, root)
    storage = LocalStorage(root)
    source = LocalStorage(template)
    for info in source.list(""):
        if REF.path in info.key:
            storage.put(info.key, source.get(info.key))
    captured = next(layout.SessionRef(*info.key.split("/")[1:4]) for info in storage.list("sessions/")
                    if info.key.endswith("manifest.json") and REF.path not in info.key)  # fmt: skip
    mark(storage, captured, expired=("logs", "metrics"))
    mark(storage, REF, deleted=True)
    with served(root, tmp_path_factory.mktemp("expired-ui-cache"), refresh_interval=3600) as url:
        yield f"{url}/sessions/{captured.path}"


def test_expired_logs_and_metrics_say_so_on_their_pages(browser, expired_ui: str) -> None:
    from .uiserver import Watch

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    base = expired_ui.split("/sessions/")[0]
    watch = Watch(base)
    watch.attach(page)
    try:
        page.goto(f"{expired_ui}/logs")
        note = page.locator("[data-expired=logs]")
        assert re.fullmatch(r"Logs of this session expired on \d{4}-\d{2}-\d{2} under the retention policy "
                            r"\(logs older than 14 days\)\.", note.inner_text())  # fmt: skip
        assert note.is_visible() and page.locator("table").count() == 0
        page.goto(f"{expired_ui}/metrics")
        assert page.locator("[data-expired=metrics]").inner_text().startswith("Metrics of this session expired on")
        page.goto(f"{expired_ui}/metrics/query?name=ray_node_cpu_utilization")
        assert page.locator("[data-expired=metrics]").is_visible()
        page.goto(expired_ui)
        assert page.locator("[data-expired]").count() == 2 and page.locator("h1").is_visible()
        page.goto(f"{base}/sessions")
        assert page.get_by_text("logs expired").is_visible() and REF.cluster not in page.content()
    finally:
        context.close()
    watch.assert_clean()
    with httpx.Client(base_url=base) as client:
        deleted = client.get(f"/sessions/{REF.path}", headers={"accept": "text/html"})
        assert deleted.status_code == 404 and f"no session {REF.path} in the archive" in deleted.text


def test_a_file_gone_under_an_open_session_is_never_a_500(template: Path, tmp_path: Path, open_server) -> None:
    """Objects deleted sooner than the catalog could know (a grace shorter than its refresh, or parts that
    compaction replaced while a session was open): a local archive's files are read in place."""
    shutil.copytree(template, tmp_path / "archive")
    archive = LocalStorage(tmp_path / "archive")
    _, client = open_server(archive)
    assert ok(client, api(REF, "/logs"))["total"] > 0
    archive.delete(cleaner_order(archive, REF, ("logs",), deleted=False)[0])
    answer = client.get(api(REF, "/logs"))
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert answer.json() == {"error": f"objects of session {REF.path} changed in the archive while they were read: "
                             "try again"}  # fmt: skip
    assert ok(client, api(REF, "/logs"))["total"] > 0  # listed again

    assert ok(client, api(REF, "/metrics"))["total"] > 0
    mark(archive, REF, deleted=True)  # and no refresh before the deletes
    archive.delete(cleaner_order(archive, REF, ("metrics",), deleted=False)[0])
    answer = client.get(api(REF, "/metrics"))
    assert answer.status_code == 404 and answer.json() == {"error": f"no session {REF.path} in the archive"}


# --- the catalog and the snapshot store, alone -----------------------------------------------------


def test_the_catalog_reads_the_retention_document(template: Path, tmp_path: Path) -> None:
    shutil.copytree(template, tmp_path / "archive")
    storage = LocalStorage(tmp_path / "archive")
    with Catalog(storage) as catalog:
        catalog.refresh()
        assert (catalog.get(*REF.path.split("/")) or {})["expired_kinds"] == []
        mark(storage, REF, expired=("logs", "metrics"))
        assert catalog.refresh().documents_read == 1
        row = catalog.get(*REF.path.split("/")) or {}
        assert row["expired_kinds"] == ["logs", "metrics"]
        assert row["expired"]["logs"] == {"at_ms": DECIDED_MS, "delete_after_ms": DECIDED_MS + GRACE_MS,
                                          "reason": REASON["logs"]}  # fmt: skip
        assert (catalog.withheld("logs"), catalog.withheld("events")) == ({REF.path}, set())
        with pytest.raises(ValueError, match="invalid sort"):
            catalog.list_sessions(SessionQuery(sort="expired_kinds"))

        mark(storage, REF, deleted=True)
        assert catalog.refresh().sessions_removed == 1
        assert catalog.get(*REF.path.split("/")) is None and catalog.paths() == {OTHER.path}
        assert catalog.list_sessions(SessionQuery())[0] == 1
        assert [row["session"] for row in catalog.rows_by_status(STATUSES, ("session",))] == [OTHER.session]
        assert catalog.withheld("events") == catalog.withheld("snapshots") == {REF.path}

        # A document that cannot be read is reported, as any session document, and not obeyed.
        storage.put(layout.retention_key(REF), b"{not json")
        catalog.refresh()
        assert (catalog.get(*REF.path.split("/")) or {})["unreadable"] == [layout.retention_key(REF)]
        storage.delete(layout.retention_key(REF))
        assert catalog.refresh().documents_removed == 1
        row = catalog.get(*REF.path.split("/")) or {}
        assert (row["unreadable"], row["expired_kinds"], row["expired"]) == ([], [], {})


def test_a_derivation_never_writes_over_a_snapshot_of_more_parts(template: Path, tmp_path: Path) -> None:
    """Two replicas: one derives from every part and writes back; the other, opening after some parts went
    and before that write landed, derived from fewer. Its write-back keeps the archive's, and it serves that."""
    shutil.copytree(template, tmp_path / "archive")
    storage = LocalStorage(tmp_path / "archive")
    with Catalog(storage) as catalog:
        catalog.refresh()
        end = session_end(catalog.get(*REF.path.split("/")) or {})
    whole = SnapshotStore(storage, Mirror(storage, tmp_path / "a"), tmp_path / "a")
    full = whole.load(REF, end)
    whole.wait_written()
    stored = snapshot_objects(storage, REF)
    for key in stored:
        storage.delete(key)
    parts = cleaner_order(storage, REF, ("events",), deleted=False)
    for key in parts[: len(parts) // 2]:
        storage.delete(key)

    late = SnapshotStore(storage, Mirror(storage, tmp_path / "b"), tmp_path / "b")
    release = threading.Event()
    write = late._write

    def slow_write(*args: Any) -> None:
        release.wait(30)
        write(*args)

    late._write = slow_write  # type: ignore[method-assign]
    assert late.load(REF, end).source == "derived"
    for key, data in stored.items():  # the first replica's write lands meanwhile
        storage.put(key, data)
    release.set()
    late.wait_written()
    assert snapshot_objects(storage, REF) == stored
    again = late.load(REF, end)
    assert (again.source, again.manifest) == ("archive", full.manifest)
