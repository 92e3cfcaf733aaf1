"""`ray-history serve` binds its port before it imports its heavy parts (issue 14: the port answers within a
second of the start): what the port answers meanwhile, and the handover of the same socket to the server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from historyserver.readiness import wait_until_serving
from historyserver.starting import REASON, StartingPort
from ray_history.cli import main
from ray_history.localray import free_port


@pytest.fixture
def starting() -> Iterator[tuple[StartingPort, str]]:
    port = free_port()
    with StartingPort("127.0.0.1", port) as holder:
        yield holder, f"http://127.0.0.1:{port}"
    holder.socket.close()


def test_while_starting_the_process_is_alive_and_not_ready(starting: tuple[StartingPort, str]) -> None:
    _, base = starting
    health = httpx.get(f"{base}/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}

    readyz = httpx.get(f"{base}/readyz")
    assert readyz.status_code == 503 and readyz.headers["retry-after"] == "1"
    assert readyz.json() == {"ready": False, "reason": REASON, "catalog": {"state": "starting"},
                             "store": {"reachable": None}}  # fmt: skip

    api = httpx.get(f"{base}/api/v1/sessions?limit=5", headers={"accept": "text/html"})
    assert api.status_code == 503 and api.json() == {"error": REASON} and api.headers["retry-after"] == "1"

    page = httpx.get(f"{base}/sessions", headers={"accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
    assert "The history server is starting" in page.text and "http-equiv='refresh'" in page.text


def test_a_silent_or_broken_client_does_not_hold_the_port(starting: tuple[StartingPort, str]) -> None:
    holder, base = starting
    with socket.create_connection(holder.socket.getsockname()) as silent:
        with socket.create_connection(holder.socket.getsockname()) as garbage:
            garbage.sendall(b"\x00\xffnot http\r\n\r\n")
            began = time.monotonic()
            assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
            assert time.monotonic() - began < 2.5
            assert garbage.recv(100).startswith(b"HTTP/1.1 503")
        assert silent.recv(100) == b""  # given up on after its read timeout, and closed


def _app(_: Request) -> PlainTextResponse:
    return PlainTextResponse("the server itself")


def test_the_socket_is_handed_over_and_a_waiting_connection_is_answered_by_the_server() -> None:
    port = free_port()
    with StartingPort("127.0.0.1", port) as holder:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        listening = holder.hand_over()
    # Between the handover and the server's start: a connection waits in the socket's backlog, and the
    # server's loops, which wait for the app's own answer, go on waiting.
    assert not wait_until_serving("127.0.0.1", port, timeout=0.5)
    waiting = socket.create_connection(("127.0.0.1", port), timeout=10)
    waiting.sendall(b"GET /anything HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    app = Starlette(routes=[Route("/{path:path}", _app)])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    try:
        with waiting:
            answer = b""
            while chunk := waiting.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"the server itself")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").text == "the server itself"
        assert wait_until_serving("127.0.0.1", port, timeout=5)
    finally:
        server.should_exit = True
        thread.join(10)
        listening.close()


def test_an_address_in_use_is_refused_at_once_with_what_to_do(tmp_path: object) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        began = time.monotonic()
        result = CliRunner().invoke(main, ["serve", "--archive", str(tmp_path), "--listen", f"127.0.0.1:{port}",
                                           "--cache-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.output
    assert "--listen" in result.output and "Traceback" not in result.output
    assert time.monotonic() - began < 5
