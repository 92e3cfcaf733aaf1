"""The history server's HTTP face: the JSON API under /api/v1, health, readiness and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from .api import entities, events, jobs, logs, metrics, sessions, sql, tasks, timeline
from .api.common import FastJSON
from .errors import BadRequest, NotFound
from .server import HistoryServer

API = "/api/v1"


def create_app(history: HistoryServer) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        history.start()
        yield
        history.stop()

    app = FastAPI(
        title="Ray history server", version="0.1.0", lifespan=lifespan, default_response_class=FastJSON,
        description="Finished Ray sessions rebuilt from the archive: sessions, jobs, tasks, actors, nodes, "
        "logs, metrics, timeline and read-only SQL. Every list answers {total, items}.",
    )  # fmt: skip
    app.state.history = history
    registry = CollectorRegistry()
    answered = Counter("ray_history_server_requests", "Requests answered, by status.", ["status"], registry=registry)
    gauges = {
        "ray_history_server_snapshots_derived": ("Sessions whose raw events this server replayed.",
                                                 lambda: history.sessions.snapshots.derived),
        "ray_history_server_jobs_indexed_sessions": ("Sessions whose jobs are in the job index.",
                                                     history.jobs.sessions_indexed),
        "ray_history_server_jobs_pending_sessions": ("Ended sessions the job index has still to read.",
                                                     lambda: history.sessions_to_index),
    }  # fmt: skip
    for name, (description, read) in gauges.items():
        Gauge(name, description, registry=registry).set_function(read)

    for router in (sessions.router, jobs.router, tasks.router, entities.router, events.router, logs.router,
                   metrics.router, timeline.router, sql.router):  # fmt: skip
        app.include_router(router, prefix=API)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=404)

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Paths that match no route (including encoded attempts to climb out) get the same shape.
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": f"bad parameters: {reasons}"}, status_code=400)

    @app.middleware("http")
    async def count(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        answered.labels(str(response.status_code)).inc()
        return response

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        ready = history.ready
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
