"""The collector as Ray's aggregator agent sees it: POSTs in, Parquet parts and markers out."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from archive import documents, layout
from archive.events import rebuild_event
from archive.ids import b64_to_hex
from archive.parquet import parquet_to_table, table_rows
from archive.storage import open_storage

from .collectors import collector_thread

SESSION = "session_2026-11-28_19-03-57_108652_5250"


def archived_rows(archive: Path) -> list[dict]:
    storage = open_storage(str(archive))
    rows: list[dict] = []
    for info in storage.list("events/"):
        rows.extend(table_rows(parquet_to_table(storage.get(info.key))))
    return rows


def test_every_posted_event_is_archived_once_and_rebuilds_exactly(tmp_path: Path, camel_posts) -> None:
    with collector_thread(tmp_path) as collector, httpx.Client(base_url=collector.url) as client:
        for post in camel_posts:
            answer = client.post("/v1/events", json=post)
            assert answer.status_code == 200, answer.text
        # Ray sends a batch again whole when it timed out waiting for our answer.
        assert client.post("/v1/events", json=camel_posts[3]).json()["duplicates"] == len(camel_posts[3])
    rows = archived_rows(tmp_path / "archive")
    sent = {b64_to_hex(event["eventId"]): event for post in camel_posts for event in post}
    assert len(rows) == len(sent)
    for row in rows:
        assert rebuild_event(row) == sent[row["event_id"]]
    keys = [info.key for info in open_storage(str(tmp_path / "archive")).list("")]
    assert any(key.startswith(f"events/default/local/{SESSION}/node-a/part-") for key in keys)


def test_snake_case_posts_are_accepted_too(tmp_path: Path, snake_posts) -> None:
    with collector_thread(tmp_path) as collector:
        for post in snake_posts:
            assert httpx.post(f"{collector.url}/v1/events", json=post).status_code == 200
    rows = archived_rows(tmp_path / "archive")
    assert len(rows) == len({event["event_id"] for post in snake_posts for event in post})
    assert {row["event_type"] for row in rows} >= {"TASK_DEFINITION_EVENT", "TASK_LIFECYCLE_EVENT"}


def test_a_body_that_is_not_json_gets_400_with_the_reason(tmp_path: Path) -> None:
    with collector_thread(tmp_path) as collector:
        answer = httpx.post(f"{collector.url}/v1/events", content=b"{not json")
        assert answer.status_code == 400
        assert "JSON array" in answer.json()["error"]
        metrics = httpx.get(f"{collector.url}/metrics").text
    assert 'ray_history_collector_requests_rejected_total{reason="bad_body"} 1.0' in metrics


def test_malformed_events_are_quarantined_and_the_good_ones_kept(tmp_path: Path, camel_posts) -> None:
    good = camel_posts[0]
    batch = [*good, {"no": "id"}, 42, {"eventId": "AAAA", "eventType": "X", "timestamp": "not a time"}]
    with collector_thread(tmp_path) as collector:
        answer = httpx.post(f"{collector.url}/v1/events", json=batch)
        assert answer.status_code == 200
        # Every event is converted once at the door: the bad timestamp is refused there too, not later.
        assert answer.json() == {"accepted": len(good), "duplicates": 0, "quarantined": 3}
        metrics = httpx.get(f"{collector.url}/metrics").text
    assert "ray_history_collector_events_quarantined_total 3.0" in metrics
    rows = archived_rows(tmp_path / "archive")
    quarantined = [row for row in rows if row["event_type"] == "QUARANTINED_EVENT"]
    assert len(quarantined) == 3
    assert any("not RFC 3339" in json.loads(row["payload"])["reason"] for row in quarantined)
    assert {json.loads(row["payload"]).get("raw") for row in quarantined} >= {'{"no":"id"}', "42"}
    assert len([row for row in rows if row["event_type"] != "QUARANTINED_EVENT"]) == len(good)


def test_a_full_spool_answers_503_with_retry_after(tmp_path: Path, camel_posts) -> None:
    with collector_thread(tmp_path, spool_max_bytes=1, seal_interval=3600) as collector:
        first = httpx.post(f"{collector.url}/v1/events", json=camel_posts[0])
        assert first.status_code == 200  # the spool was empty: this batch fits, and fills it
        second = httpx.post(f"{collector.url}/v1/events", json=camel_posts[1])
        assert second.status_code == 503
        assert second.headers["Retry-After"].isdigit()
        assert httpx.get(f"{collector.url}/readyz").status_code == 503
        assert httpx.get(f"{collector.url}/healthz").status_code == 200


def test_shutdown_writes_the_manifest_final_marker_and_closed(tmp_path: Path, camel_posts) -> None:
    session_dir = tmp_path / "ray" / SESSION
    (session_dir / "logs").mkdir(parents=True)
    (tmp_path / "ray" / "session_latest").symlink_to(session_dir)
    node_hex = "50dae9eb11ba41e336fa66cb35aa1a3832f70b5b1c80e9d237bec012"
    (session_dir / f"gcs_server_port_{node_hex}").write_text("6379")
    (session_dir / "logs" / "gcs_server.out").write_text(
        "gcs_server_main.cc:98: Ray cluster metadata ray_version=2.60.0 x\n"
    )
    with collector_thread(tmp_path, owner_kind="RayJob", owner_name="train-7", labels={"team": "ml"}) as collector:
        for post in camel_posts:
            httpx.post(f"{collector.url}/v1/events", json=post)
    storage = open_storage(str(tmp_path / "archive"))
    ref = layout.SessionRef("default", "local", SESSION)
    manifest = documents.decode(storage.get(layout.manifest_key(ref)), documents.Manifest)
    assert manifest.ray_version == "2.60.0"
    assert manifest.head_ray_node_id == node_hex
    assert (manifest.owner.kind, manifest.owner.name, manifest.labels) == (
        "RayJob",
        "train-7",
        {"team": "ml"},
    )
    marker = documents.decode(storage.get(layout.node_marker_key(ref, "node-a")), documents.NodeMarker)
    assert marker.final and marker.events_uploaded == sum(len(post) for post in camel_posts)
    closed = documents.decode(storage.get(layout.closed_key(ref)), documents.Closed)
    assert closed.closed_by == "node-a"


def test_uploads_wait_out_an_object_store_that_is_down(tmp_path: Path, camel_posts) -> None:
    from moto.server import ThreadedMotoServer

    from archive.storage import S3Options
    from ray_history.localray import free_port

    from .objectstores import create_bucket

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    storage = open_storage("s3://archive/ray", S3Options(endpoint_url=endpoint, access_key="k", secret_key="s"))
    with collector_thread(tmp_path, storage=storage) as collector:
        # Nothing listens on the port yet: the object store is down, and Ray must not notice.
        for post in camel_posts:
            assert httpx.post(f"{collector.url}/v1/events", json=post).status_code == 200
        deadline = time.monotonic() + 20
        while collector.metrics.upload_failures._value.get() < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert collector.metrics.upload_failures._value.get() >= 1
        assert collector.spool.size_bytes > 0  # still holding every acknowledged event

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            create_bucket(endpoint, "k", "s", "archive")
            deadline = time.monotonic() + 45
            while collector.spool.size_bytes and time.monotonic() < deadline:
                time.sleep(0.5)
            assert collector.spool.size_bytes == 0
            rows = [
                row for info in storage.list("events/") for row in table_rows(parquet_to_table(storage.get(info.key)))
            ]
            assert len(rows) == len({event["eventId"] for post in camel_posts for event in post})
        finally:
            collector.request_stop()
            time.sleep(1)
            server.stop()


def test_get_on_the_events_path_is_not_allowed(tmp_path: Path) -> None:
    with collector_thread(tmp_path) as collector:
        assert httpx.get(f"{collector.url}/v1/events").status_code == 405


def test_when_ray_restarts_the_old_session_is_closed_and_the_new_one_beats(tmp_path: Path) -> None:
    ray_dir = tmp_path / "ray"
    old, new = ray_dir / "session_old", ray_dir / "session_new"
    for session in (old, new):
        (session / "logs").mkdir(parents=True)
    (ray_dir / "session_latest").symlink_to(old)
    storage = open_storage(str(tmp_path / "archive"))
    old_ref = layout.SessionRef("default", "local", "session_old")
    new_ref = layout.SessionRef("default", "local", "session_new")

    def marker(ref: layout.SessionRef) -> documents.NodeMarker | None:
        key = layout.node_marker_key(ref, "node-a")
        if not list(storage.list(key)):
            return None
        return documents.decode(storage.get(key), documents.NodeMarker)

    def wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 15
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)

    with collector_thread(tmp_path, storage=storage, heartbeat_interval=1.0):
        wait_for(lambda: marker(old_ref) is not None, "the first session's heartbeat")
        assert not marker(old_ref).final  # type: ignore[union-attr]
        (ray_dir / "session_latest").unlink()
        (ray_dir / "session_latest").symlink_to(new)
        wait_for(lambda: marker(new_ref) is not None, "the new session's heartbeat")
        assert marker(old_ref).final  # type: ignore[union-attr]
        assert list(storage.list(layout.closed_key(old_ref)))
        assert not marker(new_ref).final  # type: ignore[union-attr]
        beat = marker(new_ref).last_heartbeat_ms  # type: ignore[union-attr]
        wait_for(lambda: marker(new_ref).last_heartbeat_ms > beat, "a second heartbeat")  # type: ignore[union-attr]
        assert marker(old_ref).final  # type: ignore[union-attr]
