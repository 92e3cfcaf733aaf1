"""The history server's HTTP face: the JSON API under /api/v1, its pages at the same paths without the
prefix, health, readiness and metrics."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import duckdb
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import ui

from . import rayapi, rayfrontend
from .errors import BadRequest, Expired, NotFound
from .server import HistoryServer
from .views import compare, entities, events, jobs, logs, metrics, sessions, sql, tasks, timeline
from .views.common import FastJSON, page_context
from .views.pages import render

API = "/api/v1"
SESSION_PARAMS = ("namespace", "cluster", "session")
# What DuckDB says when a file a view names is gone (an archive on a local disk is read in place).
MISSING_FILE = ("No files found", "No such file", "Cannot open file")
log = logging.getLogger(__name__)


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

    for module in (sessions, jobs, tasks, entities, events, logs, metrics, timeline, sql, compare):
        app.include_router(module.views.api, prefix=API)
        app.include_router(module.views.pages)
    app.include_router(rayapi.router)  # Ray's own dashboard API, per session: /ray/{ns}/{cluster}/{session}/...
    app.include_router(rayfrontend.router)  # after the API: its catch-all serves the frontend's files
    app.mount("/static", StaticFiles(directory=ui.STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/sessions")

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return _error(request, 404, "Not found", str(exc))

    @app.exception_handler(Expired)
    async def expired(request: Request, exc: Expired) -> Response:
        return _error(request, 410, "Expired", str(exc))

    @app.exception_handler(duckdb.IOException)
    async def vanished(request: Request, exc: duckdb.IOException) -> Response:
        """A file a request read went away under it: never a 500 for what retention or compaction did."""
        params = request.path_params
        if not any(text in str(exc) for text in MISSING_FILE) or not all(name in params for name in SESSION_PARAMS):
            log.error("%s failed", request.url.path, exc_info=exc)
            return _error(request, 500, "Error", "the server could not read the archive; see its log")
        status, message = await run_in_threadpool(history.vanished, *(params[name] for name in SESSION_PARAMS))
        answer = _error(request, status, "Not found" if status == 404 else "Try again", message)
        if status == 503:
            answer.headers["Retry-After"] = "1"
        return answer

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> Response:
        return _error(request, 400, "Bad request", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Paths that match no route (including encoded attempts to climb out) get the same shape.
        return _error(request, exc.status_code, "Not found" if exc.status_code == 404 else "Error", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return _error(request, 400, "Bad request", f"bad parameters: {reasons}")

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


def _error(request: Request, status: int, title: str, message: str) -> Response:
    """JSON for the API and for machines; a page, with the reason and a way on, for a person's browser."""
    wants_page = not request.url.path.startswith(API) and "text/html" in request.headers.get("accept", "")
    if not wants_page:
        return JSONResponse({"error": message}, status_code=status)
    return render(request, "error.html", status_code=status, title=title, message=message, json_url=None,
                  **page_context(dict(request.path_params)))  # fmt: skip
