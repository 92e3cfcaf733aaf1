"""The history server's HTTP face: the JSON API under /api/v1, its pages at the same paths without the
prefix, health, readiness and metrics."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import duckdb
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import ui
from archive.storage import InvalidKey, StorageError

from . import login, rayapi, rayfrontend
from .access import viewer_of
from .errors import BadRequest, Expired, NotFound, Unavailable
from .limits import Busy
from .login import AccessSettings, AuthMiddleware, Gate
from .maintenance import UsageGauges
from .served import Served
from .server import HistoryServer
from .storehealth import WatchedStorage
from .views import compare, entities, events, jobs, logs, metrics, sessions, sql, tasks, timeline
from .views.common import API, FastJSON, page_context
from .views.pages import render

# When to ask again after the store failed a request: soon, the probe of an outage takes its budget at most.
STORE_RETRY_AFTER_S = 5
SESSION_PARAMS = ("namespace", "cluster", "session")
# What DuckDB says when a file a view names is gone (an archive on a local disk is read in place).
MISSING_FILE = ("No files found", "No such file", "Cannot open file")
log = logging.getLogger(__name__)


def create_app(history: HistoryServer, access: AccessSettings | None = None) -> FastAPI:
    """The app; `access` says who may see what (historyserver.login): none, the server is open to everyone."""

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
    gauges = {
        "ray_history_server_snapshots_derived": ("Sessions whose raw events this server replayed.",
                                                 lambda: history.sessions.snapshots.derived),
        "ray_history_server_jobs_indexed_sessions": ("Sessions whose jobs are in the job index.",
                                                     history.jobs.sessions_indexed),
        "ray_history_server_jobs_pending_sessions": ("Ended sessions the job index has still to read.",
                                                     lambda: history.sessions_to_index),
        "ray_history_server_catalog_loaded": ("1 once the catalog's first load has read every session document.",
                                              lambda: int(history.ready)),
        "ray_history_server_store_reachable": ("1 while the object store answers the server, 0 while it does not.",
                                               lambda: int(history.health.reachable)),
        "ray_history_server_sql_running": ("SQL queries running in the SQL pool's workers.",
                                           lambda: history.sql.admission.running),
        "ray_history_server_sql_refused": ("SQL queries answered 429 (the pool and its queue full) since start.",
                                           lambda: history.sql.admission.refused),
        "ray_history_server_derivations_running": ("Sessions being derived from their raw events.",
                                                   lambda: history.sessions.snapshots.derivations.admission.running),
        "ray_history_server_answers_kept_hits": ("Requests answered from the kept answers since start.",
                                                 lambda: history.answers.hits),
        "ray_history_server_answers_kept_misses": ("Requests that could have been, and were computed, since start.",
                                                   lambda: history.answers.misses),
        "ray_history_server_derivations_refused": ("First opens answered 503 (derivations at their bound) since start.",
                                                   lambda: history.sessions.snapshots.derivations.admission.refused),
    }  # fmt: skip
    for name, (description, read) in gauges.items():
        Gauge(name, description, registry=registry).set_function(read)
    registry.register(StoreCalls(history.storage))
    shown = access or AccessSettings()
    registry.register(UsageGauges(history.maintenance, shown.auth is None or not shown.metrics_public))
    gate = Gate(access or AccessSettings(), registry, history.storage)
    app.state.gate = gate

    async def needs_catalog() -> None:
        # Before the first load is done a list would be short and a session not yet read a wrong 404.
        if not history.ready:
            raise Unavailable(f"the server is starting, {history.load.reason()}", history.load.retry_after_s())

    def in_reach(request: Request) -> None:
        # Every URL naming a session: 404 for one the archive lacks or the viewer may not see, alike, before
        # the route reads anything (its own reads take the viewer too).
        params = request.path_params
        if all(name in params for name in SESSION_PARAMS):
            history.session_row(*(params[name] for name in SESSION_PARAMS), viewer_of(request))

    catalog = [Depends(needs_catalog), Depends(in_reach)]

    for module in (sessions, jobs, tasks, entities, events, logs, metrics, timeline, sql, compare):
        app.include_router(module.views.api, prefix=API, dependencies=catalog)
        app.include_router(module.views.pages, dependencies=catalog)
    # Ray's own dashboard API, per session: /ray/{ns}/{cluster}/{session}/...
    app.include_router(rayapi.router, dependencies=catalog)
    # After the API: its catch-all serves the frontend's files.
    app.include_router(rayfrontend.router, dependencies=catalog)
    app.mount("/static", StaticFiles(directory=ui.STATIC), name="static")
    app.include_router(login.router)

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

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable) -> Response:
        return _error(request, 503, "Not available yet", str(exc), retry_after_s=exc.retry_after_s)

    @app.exception_handler(StorageError)
    async def store_failed(request: Request, exc: StorageError) -> Response:
        # The store's fault, not the request's: worth trying again. StoreHealth has logged it (an outage once),
        # and a handled error keeps the connection, where an unhandled one dropped it after a bare 500.
        if isinstance(exc, InvalidKey):
            return _error(request, 400, "Bad request", str(exc))
        return _error(request, 503, "The archive cannot be read", str(exc), retry_after_s=STORE_RETRY_AFTER_S)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> Response:
        return _error(request, 400, "Bad request", str(exc))

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy) -> Response:
        # Heavy work at its bound (SQL queries, sessions being derived): to ask again shortly, not an error.
        answer = _error(request, exc.status, "Being prepared" if exc.status == 503 else "Too many queries", str(exc))
        answer.headers["Retry-After"] = str(exc.retry_after_s)
        return answer

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Paths that match no route (including encoded attempts to climb out) get the same shape.
        return _error(request, exc.status_code, "Not found" if exc.status_code == 404 else "Error", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return _error(request, 400, "Bad request", f"bad parameters: {reasons}")

    # Added before `Served`, so inside it: refused requests are counted and timed too.
    app.add_middleware(AuthMiddleware, gate=gate)
    app.add_middleware(Served, registry=registry)

    # Both on the event loop, not in the thread pool: requests waiting on a frozen store must not hold up probes.
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        answer = history.readiness()
        return JSONResponse(answer, status_code=200 if answer["ready"] else 503)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _error(request: Request, status: int, title: str, message: str, retry_after_s: int | None = None) -> Response:
    """JSON for the API and for machines; a page, with the reason and a way on, for a person's browser."""
    wants_page = not request.url.path.startswith(API) and "text/html" in request.headers.get("accept", "")
    if not wants_page:
        answer: Response = JSONResponse({"error": message}, status_code=status)
    else:
        answer = render(request, "error.html", status_code=status, title=title, message=message, json_url=None,
                        **page_context(dict(request.path_params)))  # fmt: skip
    if retry_after_s is not None:
        answer.headers["Retry-After"] = str(retry_after_s)
    return answer


class StoreCalls(Collector):
    """/metrics: the server's calls to the object store by method, kind of key and outcome (its WatchedStorage)."""

    def __init__(self, storage: WatchedStorage) -> None:
        self.storage = storage

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("ray_history_server_store_calls", "Calls to the object store, by method, "
                                     "kind of key and outcome.", labels=["method", "kind", "outcome"])  # fmt: skip
        for (method, kind, outcome), count in sorted(self.storage.counts().items()):
            family.add_metric([method, kind, outcome], count)
        yield family
