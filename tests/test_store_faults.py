"""The history server when its object store fails under it (issue 14): killed, then frozen (SIGSTOP), on a real
SeaweedFS, with `ray-history serve` run as an operator runs it.

What must hold: a request that needs the store answers 503 within the S3 budget, with a JSON body saying what
failed and what to check and a Retry-After (a page for a browser), never a 500 or a dropped connection; what
is open keeps being served; the store coming back needs no restart; the log says it once each way.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from archive.layout import SessionRef
from archive.storage import S3Options, StoreUnreachable
from archive.storage.s3 import S3Storage
from bench.archive_synth import write_catalog, write_session
from bench.startup import serve_command, serving
from ray_history.localray import free_port

from .objectstores import SeaweedFS, seaweedfs_server

BUCKET = "store-faults"
BUDGET_S = 2.0
# Around the budget: the request's own work and the 503's, on two cores shared with the store and the test.
SLACK_S = 1.5
TASKS = 200
OPENED = SessionRef("faults", "synth", "session_2026-11-20_08-00-00_000000_1")
# Sessions nobody opens before the store fails: opening one needs the store.
UNOPENED = [SessionRef("faults", "synth", f"session_2026-11-20_09-00-00_000000_{n}") for n in (2, 3)]


@dataclass
class Served:
    weed: SeaweedFS
    base: str
    log_path: Path

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()


def s3_storage(weed: SeaweedFS) -> S3Storage:
    options = S3Options(endpoint_url=weed.endpoint_url, region="us-east-1", access_key=weed.access_key,
                        secret_key=weed.secret_key)  # fmt: skip
    return S3Storage(BUCKET, "archive", options)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("faults")
    with seaweedfs_server(workdir / "weed") as weed:
        weed.create_bucket(BUCKET)
        storage = s3_storage(weed)
        write_catalog(storage, 20, seed=5)
        for seed, ref in enumerate([OPENED, *UNOPENED], start=1):
            write_session(storage, ref, TASKS, seed=seed)
        command = serve_command(
            f"s3://{BUCKET}/archive", free_port(), workdir / "cache", "--s3-endpoint", weed.endpoint_url,
            "--s3-region", "us-east-1", "--s3-budget", str(BUDGET_S), "--refresh-interval", "1",
        )  # fmt: skip
        env = {"AWS_ACCESS_KEY_ID": weed.access_key, "AWS_SECRET_ACCESS_KEY": weed.secret_key}
        log_path = workdir / "serve.log"
        with serving(command, log_path, env):
            base = f"http://{command[command.index('--listen') + 1]}"
            wait_for(lambda: _status(f"{base}/readyz") == 200, 60, "the server to load its catalog")
            # The job index derives every ended session once; its store calls are done before the faults begin.
            wait_for(lambda: _indexed(base) >= _ended(base), 60, "the job index")
            with httpx.Client(timeout=30) as client:
                assert client.get(f"{base}/api/v1/sessions/{OPENED.path}/tasks").status_code == 200
            yield Served(weed, base, log_path)


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.1)


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return None


def _ended(base: str) -> int:
    """Sessions the job index takes: closed or silent (write_catalog makes a few running)."""
    sessions = httpx.get(f"{base}/api/v1/sessions", params={"limit": 1}).json()["total"]
    return int(sessions - httpx.get(f"{base}/api/v1/sessions", params={"status": "running"}).json()["total"])


def _indexed(base: str) -> float:
    found = re.search(r"^ray_history_server_jobs_indexed_sessions (\S+)$", httpx.get(f"{base}/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def tasks_url(base: str, ref: SessionRef) -> str:
    return f"{base}/api/v1/sessions/{ref.path}/tasks"


def client_port(response: httpx.Response) -> int:
    """The local port of the connection the response came on: the same port, the same connection."""
    return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])


def assert_store_503(response: httpx.Response, started: float, weed: SeaweedFS) -> None:
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert elapsed < BUDGET_S + SLACK_S, f"{elapsed:.1f} s for a 503"
    assert response.headers["content-type"] == "application/json"
    assert 1 <= int(response.headers["retry-after"]) <= 30
    error = response.json()["error"]
    # What failed, where, and what to check.
    assert "object store" in error and weed.endpoint_url in error and "check" in error, error


def assert_outage_logged_once(served: Served, before: int) -> None:
    lines = served.log_lines()[before:]
    assert sum("is unreachable" in line for line in lines) == 1, lines
    back = [line for line in lines if " is back after " in line]
    assert len(back) == 1 and re.search(r"; \d+ calls failed meanwhile", back[0]), lines
    assert not any("Traceback" in line or "ERROR" in line for line in lines), lines
    assert len(lines) <= 6, lines


def test_a_killed_store_answers_503_with_the_reason_keeps_the_connection_and_recovers(served: Served) -> None:
    before = len(served.log_lines())
    served.weed.kill()
    try:
        with httpx.Client(timeout=30) as client:
            started = time.monotonic()
            failed = client.get(tasks_url(served.base, UNOPENED[0]))
            assert_store_503(failed, started, served.weed)
            # The same connection, kept after the 503: the opened session is served from memory.
            opened = client.get(tasks_url(served.base, OPENED))
            assert opened.status_code == 200 and opened.json()["total"] > 0
            assert client_port(opened) == client_port(failed)
            # The catalog too, and /readyz says the store cannot be reached.
            assert client.get(f"{served.base}/api/v1/sessions").json()["total"] == 23
            ready = client.get(f"{served.base}/readyz")
            assert ready.status_code == 200
            store = ready.json()["store"]
            assert not store["reachable"] and served.weed.endpoint_url in store["last_error"]
            assert store["unreachable_since_ms"] and store["last_success_ms"]
            # A person's browser gets a page with the reason, and the same Retry-After.
            page = client.get(f"{served.base}/sessions/{UNOPENED[0].path}", headers={"accept": "text/html"})
            assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
            assert "cannot reach the object store" in page.text and page.headers["retry-after"]
    finally:
        served.weed.restart()
    wait_for(lambda: _status(tasks_url(served.base, UNOPENED[0])) == 200, 30, "the store to be back")
    assert httpx.get(f"{served.base}/readyz").json()["store"]["reachable"]
    assert_outage_logged_once(served, before)


def test_a_frozen_store_costs_a_request_its_budget_and_recovers_without_a_restart(served: Served) -> None:
    before = len(served.log_lines())
    served.weed.freeze()
    try:
        with httpx.Client(timeout=30) as client:
            started = time.monotonic()
            failed = client.get(tasks_url(served.base, UNOPENED[1]))
            assert_store_503(failed, started, served.weed)
            assert "no answer within 2 s" in failed.json()["error"]
            # While the outage lasts one call at a time probes the store (this one, or the catalog's refresh).
            started = time.monotonic()
            again = client.get(f"{served.base}/api/v1/sessions/{UNOPENED[1].path}/events")
            assert_store_503(again, started, served.weed)
            opened = client.get(tasks_url(served.base, OPENED))
            assert opened.status_code == 200 and client_port(opened) == client_port(failed)
            assert client.get(f"{served.base}/healthz").status_code == 200
    finally:
        served.weed.thaw()
    wait_for(lambda: _status(tasks_url(served.base, UNOPENED[1])) == 200, 30, "the store to be back")
    assert_outage_logged_once(served, before)


def test_every_s3_call_has_a_total_budget_against_a_store_that_never_answers() -> None:
    # A socket that listens and is never accepted from: the kernel completes every connection, nobody answers.
    # With a 30 s timeout and botocore's three attempts, a call waited 90 s and more; the budget bounds it whole.
    with socket.socket() as hanging:
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(64)
        endpoint = f"http://127.0.0.1:{hanging.getsockname()[1]}"
        options = S3Options(endpoint_url=endpoint, region="us-east-1", access_key="k", secret_key="s",
                            timeout=30.0, budget=1.0)  # fmt: skip
        storage = S3Storage(BUCKET, "archive", options)
        calls = {"put": lambda: storage.put("a/b", b"x"), "get": lambda: storage.get("a/b"),
                 "list": lambda: list(storage.list("a/")), "get_tags": lambda: storage.get_tags("a/b"),
                 "delete": lambda: storage.delete("a/b")}  # fmt: skip
        for name, call in calls.items():
            started = time.monotonic()
            with pytest.raises(StoreUnreachable) as failed:
                call()
            assert time.monotonic() - started < 1.0 + 0.5, name
            reason = str(failed.value)
            assert f"at endpoint {endpoint} failed: cannot reach the object store: no answer within 1 s" in reason
