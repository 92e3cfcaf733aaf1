"""The collector against hostile or unlucky clients: one bad event never costs another's, limits hold."""

from __future__ import annotations

import contextlib
import copy
import gzip
import json
import socket
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import msgspec
from click.testing import CliRunner
from moto.server import ThreadedMotoServer

from archive import documents, layout
from archive.ids import b64_to_hex
from archive.parquet import parquet_to_table, table_rows
from archive.storage import S3Options, open_storage
from collector.ingest import Deduper
from collector.records import Record, convert_segment, encode_record, json_array
from collector.scrape import Scrape
from collector.spool import Spool, SpoolTarget
from ray_history.cli import main
from ray_history.localray import collector_command, free_port, wait_healthy

from .collectors import collector_thread, start_collector_process, stop_collector_process
from .objectstores import create_bucket
from .test_collector import SESSION, archived_rows


def _good(camel_posts: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return camel_posts[1]


def _poison(camel_posts: list[list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Events that pass a glance at their head but that the archive cannot hold, one per way seen."""
    events = [event for post in camel_posts for event in post]
    task = next(e for e in events if e["eventType"] == "TASK_DEFINITION_EVENT")
    driver = next(e for e in events if e["eventType"] == "DRIVER_JOB_DEFINITION_EVENT")

    def variant(base: dict[str, Any], n: int, **changes: Any) -> dict[str, Any]:
        event = copy.deepcopy(base)
        event["eventId"] = f"{n:04d}".encode().hex()[:8] + "AAAAAAAAAAAAAAAA"
        for path, value in changes.items():
            target = event
            *parents, last = path.split("__")
            for key in parents:
                target = target[key]
            target[last] = value
        return event

    return {
        "year 3000": variant(task, 1, timestamp="3000-01-01T00:00:00Z"),
        "year 1": variant(task, 2, timestamp="0001-01-01T00:00:00Z"),
        "a non-ASCII digit in the fraction": variant(task, 3, timestamp="2026-11-28T19:04:08.3\u0663Z"),
        "a sessionName that is not text": variant(task, 4, sessionName=7),
        "a sessionName that cannot be a key": variant(task, 5, sessionName="a b"),
        "a sessionName that climbs out": variant(task, 6, sessionName=".."),
        "a config that is not an object": variant(driver, 7, driverJobDefinitionEvent__config="yes"),
        "an attempt past 32 bits": variant(task, 8, taskDefinitionEvent__taskAttempt=2**31),
    }


def _deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def test_each_poisonous_event_is_quarantined_alone_at_the_door(tmp_path: Path, camel_posts) -> None:
    good = _good(camel_posts)
    poison = _poison(camel_posts)
    batch = [good[0], *poison.values(), *good[1:]]
    body = json.dumps(batch).encode()
    # A string holding an invalid UTF-8 byte: splitting the body does not look inside strings.
    body = body[:-1] + b',{"eventId":"AQID","eventType":"TASK_DEFINITION_EVENT","timestamp":"2026-11-28T19:04:08Z",'
    body += b'"sessionName":"s\xff"}]'
    with collector_thread(tmp_path) as collector:
        answer = httpx.post(f"{collector.url}/v1/events", content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"accepted": len(good), "duplicates": 0, "quarantined": len(poison) + 1}
        metrics = httpx.get(f"{collector.url}/metrics").text
    assert f"ray_history_collector_events_quarantined_total {len(poison) + 1}.0" in metrics
    assert "ray_history_collector_segments_set_aside_total 0.0" in metrics
    assert not (tmp_path / "spool" / "unshippable").exists()
    rows = archived_rows(tmp_path / "archive")
    kept = Counter(row["event_id"] for row in rows if row["event_type"] != "QUARANTINED_EVENT")
    assert kept == Counter(b64_to_hex(event["eventId"]) for event in good)
    reasons = [json.loads(row["payload"])["reason"] for row in rows if row["event_type"] == "QUARANTINED_EVENT"]
    assert len(reasons) == len(poison) + 1
    for expected in ("outside the years", "not RFC 3339", "invalid session name", "must be an object",
                     "does not fit a 32-bit integer", "Invalid UTF-8"):  # fmt: skip
        assert any(expected in reason for reason in reasons), (expected, reasons)
    # Nothing was filed under a name that came from a hostile event.
    assert {key.split("/")[3] for key in _keys(tmp_path)} <= {SESSION, "unknown-session"}


def _keys(tmp_path: Path) -> list[str]:
    return [info.key for info in open_storage(str(tmp_path / "archive")).list("events/")]


def test_a_body_nested_past_the_recursion_limit_gets_400_with_the_reason(tmp_path: Path) -> None:
    # Up to about 1,000 levels an event is checked like any other; past that even splitting the body
    # into events would recurse too deep, so the request is refused whole with the reason.
    with collector_thread(tmp_path) as collector:
        answer = httpx.post(f"{collector.url}/v1/events", content=_deep(100_000))
        assert answer.status_code == 400
        assert "nested too deeply" in answer.json()["error"]


def test_an_event_that_fails_only_at_conversion_costs_nobody_else(tmp_path: Path, camel_posts) -> None:
    """A segment spooled before the door checked everything (an older collector) still ships its good events."""
    good = _good(camel_posts)
    poison = list(_poison(camel_posts).values())
    spool = Spool(tmp_path / "spool", 1 << 30, 1 << 30)
    for event in [*good[:2], *poison, *good[2:]]:
        body = json_array([json.dumps(event).encode()])
        spool.append(encode_record(Record("ray", SESSION, None, time.time_ns(), body)))
    spool.append(b"\x93not a record")  # framed and checksummed, but no record: a bug, not a torn write
    # A scrape whose sample carries a timestamp nanoseconds cannot hold, and a good one.
    for text in ("ray_tasks 3 1000000000000000\n", "ray_tasks 4\n"):
        scrape = msgspec.json.encode(Scrape(node="node-a", target="127.0.0.1:8080", text=text))
        spool.append(encode_record(Record("scrape", SESSION, None, time.time_ns(), scrape)))
    spool.seal()
    converted = convert_segment(spool.sealed_segments()[0].path)
    assert converted.quarantined == len(poison) + 2
    assert converted.rows["events", SESSION] == len(good) + len(poison) + 1
    assert converted.rows["events", "unknown-session"] == 1
    assert converted.rows["metrics", SESSION] == 1
    assert set(converted.parts) == {("events", SESSION), ("events", "unknown-session"), ("metrics", SESSION)}


def test_a_body_past_the_limits_gets_413_and_a_gzip_bomb_is_never_inflated_whole(tmp_path: Path) -> None:
    limits = {"max_body_bytes": 1 << 20, "max_inflated_bytes": 4 << 20}
    bomb = gzip.compress(b"[" + b" " * (256 << 20) + b"]", compresslevel=9)  # 256 MiB of spaces in 250 KB
    with collector_thread(tmp_path, **limits) as collector, httpx.Client(base_url=collector.url) as client:
        answer = client.post("/v1/events", content=b"[" + b" " * (2 << 20) + b"]")
        assert answer.status_code == 413
        assert "limit" in answer.json()["error"] and "--max-body-mib" in answer.json()["error"]
        started = time.monotonic()
        answer = client.post("/v1/events", content=bomb, headers={"Content-Encoding": "gzip"})
        assert answer.status_code == 413
        assert "--max-inflated-mib" in answer.json()["error"]
        assert time.monotonic() - started < 5  # stopped at the limit, not after inflating 256 MiB
        cut = gzip.compress(json.dumps([{"eventId": "AQID"}] * 100).encode())[:-12]
        truncated = client.post("/v1/events", content=cut, headers={"Content-Encoding": "gzip"})
        assert truncated.status_code == 400
        good = client.post("/v1/events", content=gzip.compress(b"[]"), headers={"Content-Encoding": "gzip"})
        assert good.status_code == 200
        metrics = client.get("/metrics").text
    assert 'ray_history_collector_requests_rejected_total{reason="too_large"} 2.0' in metrics


def test_idle_and_slow_clients_cannot_hold_the_receiver(tmp_path: Path, camel_posts) -> None:
    with collector_thread(tmp_path, max_connections=20, read_timeout=1.0) as collector:
        port = collector.config.listen_port
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n[")
        # Past the cap, connections are closed at once; the good sender still gets through.
        answer = httpx.post(f"{collector.url}/v1/events", json=_good(camel_posts), timeout=10)
        assert answer.status_code == 200
        time.sleep(2.5)
        for sock in [*idle, slow]:
            sock.settimeout(2)
            with contextlib.suppress(ConnectionResetError):  # a reset is closed too
                assert sock.recv(4096) == b"", "the receiver kept an idle or slow connection open"
            sock.close()
        assert httpx.get(f"{collector.url}/healthz").status_code == 200


def test_without_a_session_folder_the_sessions_the_events_name_are_closed(tmp_path: Path, camel_posts) -> None:
    with collector_thread(tmp_path, ray_temp_dir=tmp_path / "not-mounted") as collector:
        for post in camel_posts[:3]:
            assert httpx.post(f"{collector.url}/v1/events", json=post).status_code == 200
    storage = open_storage(str(tmp_path / "archive"))
    closed = documents.decode(
        storage.get(layout.closed_key(layout.SessionRef("default", "local", SESSION))), documents.Closed
    )
    assert closed.closed_by == "node-a"


def test_the_deduper_is_bounded_in_bytes_and_forgets_the_oldest_first() -> None:
    deduper = Deduper(max_bytes=100_000)
    batches = [[f"event-{b}-{i}" for i in range(100)] for b in range(30)]
    for batch in batches:
        deduper.add(batch)
        assert deduper.bytes <= 100_000
    assert "event-29-99" in deduper and "event-0-0" not in deduper


def test_a_spool_with_another_targets_leftovers_stops_the_collector_with_a_clear_error(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    spool = Spool(tmp_path / "spool", 1 << 20, 1 << 20, SpoolTarget(f"file://{archive}", "team-a", "c", "n"))
    spool.append(b"team a's")
    spool.close()
    result = CliRunner().invoke(main, ["collect", "--archive", str(archive), "--namespace", "team-b", "--cluster",
                                       "c", "--node", "n", "--spool-dir", str(tmp_path / "spool")])  # fmt: skip
    assert result.exit_code == 1
    assert "acknowledged for" in result.output and "team-a/c" in result.output and "--spool-dir" in result.output


def test_the_shutdown_deadline_holds_while_the_store_hangs_and_the_next_start_ships(tmp_path: Path) -> None:
    """SIGTERM with an object store that accepts and never answers: out by the deadline, nothing lost."""
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)  # accepts connections (the kernel does) and never answers
    held: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        hang.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(hang.accept()[0])
            except OSError:
                continue

    threading.Thread(target=hold, daemon=True).start()
    env = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1"}
    bucket = f"deadline-{uuid.uuid4().hex[:8]}"  # moto's servers in one process share their buckets
    archive = f"s3://{bucket}/ray"
    port = free_port()
    command = collector_command(archive, port, tmp_path / "spool", tmp_path / "ray",
                                "--seal-interval", "0.5", "--shutdown-deadline", "4")  # fmt: skip
    events = [{"eventId": f"{n:08d}".encode().hex() + "AA==", "eventType": "TASK_DEFINITION_EVENT",
               "timestamp": "2026-11-28T19:04:08Z", "sessionName": SESSION} for n in range(50)]  # fmt: skip
    try:
        process = start_collector_process(
            [*command, "--s3-endpoint", f"http://127.0.0.1:{hang.getsockname()[1]}"], tmp_path / "first.log", env
        )
        wait_healthy(f"http://127.0.0.1:{port}")
        assert httpx.post(f"http://127.0.0.1:{port}/v1/events", json=events).status_code == 200
        time.sleep(2)  # sealed, and its upload is hanging
        started = time.monotonic()
        code = stop_collector_process(process, timeout=30)
        took = time.monotonic() - started
        assert took < 4 + 3, f"the collector took {took:.1f} s to leave with a 4 s deadline"
        assert code == 1
        assert "stay in the spool" in (tmp_path / "first.log").read_text()
    finally:
        stop.set()
        for sock in held:
            sock.close()
        hang.close()
    # Started again where the store answers, it ships what the first one acknowledged.
    moto = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=moto, verbose=False)
    server.start()
    try:
        create_bucket(f"http://127.0.0.1:{moto}", "k", "s", bucket)
        process = start_collector_process([*command, "--s3-endpoint", f"http://127.0.0.1:{moto}"],
                                          tmp_path / "second.log", env)  # fmt: skip
        wait_healthy(f"http://127.0.0.1:{port}")
        assert stop_collector_process(process, timeout=60) == 0
        storage = open_storage(archive, S3Options(f"http://127.0.0.1:{moto}", "us-east-1", True, "k", "s"))
        ids = [row["event_id"] for info in storage.list("events/")
               for row in table_rows(parquet_to_table(storage.get(info.key)))]  # fmt: skip
        assert sorted(ids) == sorted(b64_to_hex(event["eventId"]) for event in events)
    finally:
        server.stop()
