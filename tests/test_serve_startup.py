"""`ray-history serve` opens its port at once and reads its catalog in the background (issue 14), on a real
SeaweedFS holding hundreds of sessions: /healthz answers while /readyz says how far the load is, what needs
the catalog answers 503 with a Retry-After meanwhile, and then everything is there."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from archive.storage import S3Options
from archive.storage.s3 import S3Storage
from bench.archive_synth import write_catalog
from bench.startup import serve_command, serving
from historyserver.readiness import NOT_STARTED
from historyserver.starting import REASON
from ray_history.localray import free_port

from .objectstores import SeaweedFS, seaweedfs_server

BUCKET = "serve-startup"
# About 2,600 documents: several seconds of reading on SeaweedFS here, so the load is seen under way.
SESSIONS = 600
SMALL = 20  # a catalog of its own, under another prefix, for the start with the store down
# The port is bound before the server imports its heavy parts (historyserver.starting): about 0.3 s after the
# spawn here, several times that on a machine as busy as a test run can make it, hence a loose bound.
PORT_AFTER_SPAWN_S = 5.0
PROGRESS = re.compile(r"^loading the catalog: [\d,]+ of [\d,]+ session documents read \([\d,]+/s\), [\d,]+ sessions")


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    with seaweedfs_server(tmp_path_factory.mktemp("weed")) as server:
        server.create_bucket(BUCKET)
        options = S3Options(endpoint_url=server.endpoint_url, region="us-east-1", access_key=server.access_key,
                            secret_key=server.secret_key)  # fmt: skip
        write_catalog(S3Storage(BUCKET, "archive", options), SESSIONS, seed=7)
        write_catalog(S3Storage(BUCKET, "small", options), SMALL, seed=8)
        yield server


def _get(url: str, **kwargs: object) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5, **kwargs)  # type: ignore[arg-type]
    except httpx.TransportError:
        return None


def _env(weed: SeaweedFS) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": weed.access_key, "AWS_SECRET_ACCESS_KEY": weed.secret_key}


def _past_starting(base: str, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    """/readyz once the server's own app answers it (before, the port answers that its code is loading) and its
    first load has begun (the load waits for the app's first answer)."""
    began = time.monotonic()
    while (readyz := httpx.get(f"{base}/readyz")).json().get("reason") in (REASON, NOT_STARTED):
        assert readyz.status_code == 503 and process.poll() is None
        assert time.monotonic() - began < 30, "the server never took over its port"
        time.sleep(0.01)
    return readyz.json()  # type: ignore[no-any-return]


def test_the_port_answers_at_once_and_readyz_says_how_far_the_catalog_is(weed: SeaweedFS, tmp_path: Path) -> None:
    command = serve_command(f"s3://{BUCKET}/archive", free_port(), tmp_path / "cache", "--s3-endpoint",
                            weed.endpoint_url, "--s3-region", "us-east-1")  # fmt: skip
    base = f"http://{command[command.index('--listen') + 1]}"
    log_path = tmp_path / "serve.log"
    spawned = time.monotonic()
    with serving(command, log_path, _env(weed)) as process:
        while (health := _get(f"{base}/healthz")) is None:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() - spawned < 30, "the port never opened"
            time.sleep(0.01)
        assert health.status_code == 200
        assert time.monotonic() - spawned < PORT_AFTER_SPAWN_S
        # Answered before the server's code is loaded (a second of imports, polled every 10 ms): its port came first.
        starting = httpx.get(f"{base}/readyz")
        assert starting.status_code == 503 and starting.json()["reason"] == REASON, starting.text

        # Not ready: the catalog is loading, and /readyz says so, with the store's state.
        body = _past_starting(base, process)
        assert body["ready"] is False and body["reason"].startswith("loading the catalog")
        assert body["catalog"]["state"] == "loading" and body["store"]["reachable"]

        # What needs the catalog answers 503 with when to ask again, as JSON and as a page; probes answer.
        sessions = httpx.get(f"{base}/api/v1/sessions")
        assert sessions.status_code == 503
        assert sessions.json()["error"].startswith("the server is starting, loading the catalog")
        assert 1 <= int(sessions.headers["retry-after"]) <= 30
        page = httpx.get(f"{base}/sessions", headers={"accept": "text/html"})
        assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
        assert "loading the catalog" in page.text and page.headers["retry-after"]
        assert httpx.get(f"{base}/metrics").status_code == 200

        # The load's progress, once the listing is in: documents read, of how many, at what rate.
        seen: list[str] = []
        while (readyz := httpx.get(f"{base}/readyz")).status_code == 503:
            reason = readyz.json()["reason"]
            if PROGRESS.match(reason):
                seen.append(reason)
            assert time.monotonic() - spawned < 60, "the catalog never loaded"
            time.sleep(0.05)
        assert seen, "no progress seen while loading"
        ready = readyz.json()
        assert ready["ready"] is True and "reason" not in ready
        assert ready["catalog"]["state"] == "loaded" and ready["catalog"]["sessions"] == SESSIONS
        assert ready["catalog"]["store_calls"]["get"] >= SESSIONS
        assert ready["store"]["reachable"] and ready["store"]["last_success_ms"] and not ready["store"]["last_error"]
        assert httpx.get(f"{base}/api/v1/sessions").json()["total"] == SESSIONS

    log = log_path.read_text()
    assert re.search(rf"catalog loaded: {SESSIONS} sessions from [\d,]+ session documents in [\d.]+ s", log), log
    assert "Traceback" not in log


def test_a_store_down_at_start_holds_readiness_back_not_the_port(weed: SeaweedFS, tmp_path: Path) -> None:
    command = serve_command(f"s3://{BUCKET}/small", free_port(), tmp_path / "cache", "--s3-endpoint",
                            weed.endpoint_url, "--s3-region", "us-east-1", "--s3-budget", "1",
                            "--refresh-interval", "1")  # fmt: skip
    base = f"http://{command[command.index('--listen') + 1]}"
    log_path = tmp_path / "serve.log"
    weed.freeze()
    try:
        spawned = time.monotonic()
        with serving(command, log_path, _env(weed)) as process:
            while _get(f"{base}/healthz") is None:
                assert process.poll() is None, log_path.read_text()
                time.sleep(0.01)
            answered = time.monotonic()
            assert answered - spawned < PORT_AFTER_SPAWN_S
            # The first load waits for the store, and /readyz says so (once the listing has had its 1 s budget).
            while (readyz := _past_starting(base, process))["store"]["reachable"]:
                assert time.monotonic() - answered < 10, readyz
                time.sleep(0.05)
            assert readyz["ready"] is False and "waiting for the object store" in readyz["reason"]
            assert "no answer within 1 s" in readyz["store"]["last_error"]
            assert httpx.get(f"{base}/api/v1/sessions").status_code == 503
            weed.thaw()
            thawed = time.monotonic()
            while (ready := httpx.get(f"{base}/readyz")).status_code == 503:
                assert time.monotonic() - thawed < 30, ready.text
                time.sleep(0.1)
            assert httpx.get(f"{base}/api/v1/sessions").json()["total"] == SMALL
    finally:
        weed.thaw()
    lines = log_path.read_text().splitlines()
    assert sum("is unreachable" in line for line in lines) == 1, lines
    assert sum(" is back after " in line for line in lines) == 1, lines
    assert not any("Traceback" in line or "ERROR" in line for line in lines), lines
