"""The server's port, opened before anything heavy is imported, and answered while the server starts.

Python takes about a second here to import DuckDB, Arrow, FastAPI and boto3, more on a busy machine; a
probe meanwhile would find the port closed. `ray-history serve` binds its socket first (an address in use
fails at once, with the reason) and answers on it from this module, which imports only the standard library:
/healthz 200 (the process lives), /readyz 503 with the reason, and everything else 503 with a Retry-After, a
page for a browser. Once the app is made, the same socket is handed to the HTTP server; connections that
arrive during the handover wait in the socket's backlog.
"""

from __future__ import annotations

import json
import select
import socket
import threading
from types import TracebackType

REASON = "starting: the server is loading its code"
RETRY_AFTER_S = 1
# What a request may take to arrive; a probe that connects and sends nothing holds the port no longer.
READ_TIMEOUT_S = 0.5
MAX_REQUEST_BYTES = 16 * 1024
BACKLOG = 2048
_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='{after}'>"
    "<title>Starting · Ray history</title></head><body><h1>The history server is starting</h1>"
    "<p>It is loading its code; this page reloads in {after} s.</p></body></html>"
)


class StartingPort:
    """The listening socket of `host:port`, answered in a thread of its own until `hand_over()`."""

    def __init__(self, host: str, port: int, backlog: int = BACKLOG) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family, backlog=backlog)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="starting-port", daemon=True)

    def __enter__(self) -> StartingPort:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._halt()
        if error is not None:
            self.socket.close()

    def hand_over(self) -> socket.socket:
        """Stop answering, and give the socket to whoever serves it from now on."""
        self._halt()
        return self.socket

    def _halt(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _serve(self) -> None:
        while not self._stop.is_set():
            # A short wait, not a blocking accept: the handover must not leave an accept pending on the socket.
            readable, _, _ = select.select([self.socket], [], [], 0.05)
            if not readable or self._stop.is_set():
                continue
            try:
                connection, _ = self.socket.accept()
            except OSError:
                continue
            with connection:
                self._answer(connection)

    def _answer(self, connection: socket.socket) -> None:
        connection.settimeout(READ_TIMEOUT_S)
        request = b""
        try:
            while b"\r\n\r\n" not in request and len(request) < MAX_REQUEST_BYTES:
                chunk = connection.recv(4096)
                if not chunk:
                    return
                request += chunk
            connection.sendall(answer_to(request))
        except OSError:
            return


def answer_to(request: bytes) -> bytes:
    """The whole HTTP answer to a request (its line and headers) while the server starts."""
    head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ")
    path = parts[1].split("?", 1)[0] if len(parts) == 3 else ""
    accept = next((line.split(":", 1)[1] for line in lines[1:] if line.lower().startswith("accept:")), "")
    headers = {"Retry-After": str(RETRY_AFTER_S)}
    if path == "/healthz":
        status, body, kind, headers = "200 OK", json.dumps({"status": "ok"}), "application/json", {}
    elif path == "/readyz":
        # The shape of the server's own answer: the catalog and the store are not looked at yet.
        readiness = {"ready": False, "reason": REASON, "catalog": {"state": "starting"},
                     "store": {"reachable": None}}  # fmt: skip
        status, body, kind = "503 Service Unavailable", json.dumps(readiness), "application/json"
    elif not path.startswith("/api/") and "text/html" in accept:
        status, body, kind = "503 Service Unavailable", _PAGE.format(after=RETRY_AFTER_S), "text/html; charset=utf-8"
    else:
        status, body, kind = "503 Service Unavailable", json.dumps({"error": REASON}), "application/json"
    encoded = body.encode()
    fields = {"Content-Type": kind, "Content-Length": str(len(encoded)), "Connection": "close", **headers}
    lines_out = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in fields.items())]
    return ("\r\n".join(lines_out) + "\r\n\r\n").encode("latin-1") + encoded
