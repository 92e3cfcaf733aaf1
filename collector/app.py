"""The collector's HTTP face: the aggregator agent's POSTs, health, readiness, and its own metrics."""

from __future__ import annotations

import gzip
import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .ingest import BadBody, Ingest
from .metrics import CollectorMetrics
from .spool import SpoolFull, SpoolWriteError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"


def create_app(ingest: Ingest, metrics: CollectorMetrics) -> Starlette:
    async def post_events(request: Request) -> Response:
        if ingest.spool.over_limit():
            metrics.requests_rejected.labels("spool_full").inc()
            return _retry_later("the collector's spool is full; the archive is behind. Retry later.")
        body = await request.body()
        if request.headers.get("content-encoding", "").lower() == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError) as exc:
                metrics.requests_rejected.labels("bad_body").inc()
                return JSONResponse({"error": f"the body is not valid gzip: {exc}"}, status_code=400)
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


def _retry_later(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": RETRY_AFTER_SECONDS})
