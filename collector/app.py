"""The collector's HTTP face: the aggregator agent's POSTs, health, readiness, and its own metrics.

A process in the Ray pod can reach it, so everything a client controls is bounded: the body's size as
sent and once inflated, the time to send a request, and the number of connections held open.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import AsyncIterator

import h11
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from .auth import authorized
from .config import CollectorConfig
from .ingest import BadBody, Ingest
from .metrics import CollectorMetrics
from .spool import SpoolFull, SpoolWriteError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"
UNAUTHORIZED = ("this collector needs its token: Authorization: Bearer TOKEN, or the token as the password of the "
                "address (http://ray:TOKEN@host:port/v1/events)")  # fmt: skip
CHALLENGE = 'Bearer realm="ray-history-collector"'


class TooLarge(Exception):
    """A body past one of the receiver's limits."""


def create_app(ingest: Ingest, metrics: CollectorMetrics, config: CollectorConfig | None = None) -> Starlette:
    config = config or CollectorConfig()

    def refuse(reason: str, status: int, message: str) -> Response:
        metrics.requests_rejected.labels(reason).inc()
        return JSONResponse({"error": message}, status_code=status)

    async def post_events(request: Request) -> Response:
        # Before anything else, the body included: a client without the token costs nothing but this answer.
        if config.token_sha256 is not None and not authorized(request.headers.get("authorization"),
                                                              config.token_sha256):  # fmt: skip
            metrics.requests_rejected.labels("unauthorized").inc()
            return JSONResponse({"error": UNAUTHORIZED}, status_code=401, headers={"WWW-Authenticate": CHALLENGE})
        if ingest.spool.over_limit():
            metrics.requests_rejected.labels("spool_full").inc()
            return _retry_later("the collector's spool is full; the archive is behind. Retry later.")
        gzipped = request.headers.get("content-encoding", "").lower() == "gzip"
        try:
            body = await asyncio.wait_for(
                _read_body(request, config.max_body_bytes, config.max_inflated_bytes, gzipped), config.read_timeout
            )
        except TooLarge as exc:
            return refuse("too_large", 413, str(exc))
        except zlib.error as exc:
            return refuse("bad_body", 400, f"the body is not valid gzip: {exc}")
        except TimeoutError:
            return refuse("timeout", 408, f"the body took longer than {config.read_timeout:g} s to arrive")
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read an answer
        try:
            accepted = await run_in_threadpool(ingest.ray_events, body)
        except BadBody as exc:
            metrics.requests_rejected.labels("bad_body").inc()
            return JSONResponse({"error": str(exc)}, status_code=400)
        except SpoolFull as exc:
            metrics.requests_rejected.labels("spool_full").inc()
            return _retry_later(str(exc))
        except SpoolWriteError as exc:
            metrics.requests_rejected.labels("spool_error").inc()
            log.error("%s", exc)
            return _retry_later(f"{exc}; free space on the spool volume")
        return JSONResponse(
            {
                "accepted": accepted.accepted,
                "duplicates": accepted.duplicates,
                "quarantined": accepted.quarantined,
            }
        )

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(_: Request) -> Response:
        if ingest.spool.over_limit():
            return PlainTextResponse("spool full", status_code=503)
        return PlainTextResponse("ready")

    async def prometheus(_: Request) -> Response:
        metrics.spool_bytes.set(ingest.spool.size_bytes)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/v1/events", post_events, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", prometheus),
        ]
    )


async def _read_body(request: Request, max_bytes: int, max_inflated: int, gzipped: bool) -> bytes:
    """The body, inflated if gzipped, refused as soon as it passes a limit (never held whole past it)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(f"the body is {declared} bytes; the limit is {max_bytes} (--max-body-mib)")
    chunks = _limited(request.stream(), max_bytes)
    return await (_inflate(chunks, max_inflated) if gzipped else _join(chunks))


async def _limited(stream: AsyncIterator[bytes], max_bytes: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(f"the body is over {max_bytes} bytes, the limit (--max-body-mib)")
        yield chunk


async def _join(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def _inflate(chunks: AsyncIterator[bytes], max_inflated: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing
    out: list[bytes] = []
    size = 0
    async for chunk in chunks:
        data = chunk
        while data:
            piece = inflater.decompress(data, max_inflated + 1 - size)
            size += len(piece)
            out.append(piece)
            if size > max_inflated:
                raise TooLarge(f"the body inflates to over {max_inflated} bytes, the limit (--max-inflated-mib)")
            data = inflater.unconsumed_tail
    if not inflater.eof:
        raise zlib.error("the gzip stream ends early")
    return b"".join(out)


def guarded_protocol(max_connections: int, read_timeout: float) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol with a connection cap and a deadline for each request to arrive.

    At the cap a new connection takes the place of one that is waiting for a request (idle, or sending
    one slowly); if every connection is busy being answered, the new one is closed at once. So idle
    clients can neither exhaust the file descriptors (the listener would then spin on accept errors)
    nor keep a sender out. A connection that has not delivered a whole request within `read_timeout` of
    opening or of its last answer is closed; one whose request is being answered is left alone.
    """

    class GuardedProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) >= max_connections:
                waiting = next((other for other in self.connections if other._waiting()), None)
                if waiting is None:
                    self.transport = transport
                    transport.close()
                    return
                waiting.transport.close()
            super().connection_made(transport)
            self._arm()

        def _waiting(self) -> bool:
            """No request of this connection is being answered: it only holds a place."""
            return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(read_timeout, self._expired)

        def _expired(self) -> None:
            if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED) and not self.transport.is_closing():
                self._arm()  # the request is in; its answer is being made
            elif not self.transport.is_closing():
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            if self in self.connections or getattr(self, "flow", None) is not None:
                super().connection_lost(exc)

    return GuardedProtocol


def _retry_later(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": RETRY_AFTER_SECONDS})
