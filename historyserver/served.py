"""What the server answered and how fast: every answer counted by status on /metrics, and its time in the server
said in a `Server-Timing` header (what a browser's developer tools and the load benchmark read), from the request's
arrival to its answer's first byte.

Plain ASGI, not a `BaseHTTPMiddleware`: that wraps every request in a task group and streams, work on the event
loop that every other request waits behind.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Buckets of answer times (seconds): pages are aimed at tens of milliseconds; SQL and first opens take seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Served:
    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.answered = Counter("ray_history_server_requests", "Requests answered, by status.", ["status"],
                                registry=registry)  # fmt: skip
        self.seconds = Histogram("ray_history_server_request_seconds", "Time from a request's arrival to its "
                                 "answer's first byte.", buckets=BUCKETS, registry=registry)  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                spent = time.perf_counter() - started
                self.answered.labels(str(message["status"])).inc()
                self.seconds.observe(spent)
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={spent * 1000:.1f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed)
