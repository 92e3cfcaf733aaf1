"""Ray's own dashboard frontend, served for a dead session at /ray/{namespace}/{cluster}/{session}/.

The built frontend ships inside the `ray` package (ray/dashboard/client/build). It loads its assets and
calls its API with relative URLs and routes with a hash router, so served under a session's prefix it
asks that prefix for everything: the Ray-compatible API answers there (historyserver.rayapi). Ray is an
optional extra of ours; without it the prefix says how to get it.
"""

from __future__ import annotations

import importlib.util
import mimetypes
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from .access import viewer_of
from .errors import NotFound
from .views.common import server_of

PREFIX = "/ray/{namespace}/{cluster}/{session}"

router = APIRouter(include_in_schema=False)

MISSING = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Ray Dashboard</title>
<link rel="stylesheet" href="/static/app.css"></head><body><main>
<h1>Ray's dashboard is not installed here</h1>
<p>This server shows a dead session in Ray's own dashboard by serving the dashboard that ships with Ray.
Install Ray beside the server to have it: <code>pip install 'ray-history[ray]'</code> (or <code>pip install
'ray[default]'</code>), then restart <code>ray-history serve</code>.</p>
<p>Meanwhile the session's own pages have everything: <a href="{session_path}">{session_path}</a>.</p>
</main></body></html>"""


@cache
def build_dir() -> Path | None:
    """The installed frontend's folder, or None when Ray (or its dashboard build) is not installed."""
    spec = importlib.util.find_spec("ray")
    if spec is None or not spec.submodule_search_locations:
        return None
    build = Path(next(iter(spec.submodule_search_locations))) / "dashboard" / "client" / "build"
    return build if (build / "index.html").is_file() else None


def _session_path(request: Request, namespace: str, cluster: str, session: str) -> str:
    # 400 for a bad name, 404 for a session unknown (or of a namespace the viewer may not see)
    server_of(request).session_row(namespace, cluster, session, viewer_of(request))
    return f"/sessions/{namespace}/{cluster}/{session}"


@router.get(PREFIX)
def without_slash(request: Request, namespace: str, cluster: str, session: str) -> Response:
    _session_path(request, namespace, cluster, session)
    # The frontend's URLs are relative: they resolve against the prefix only when it ends with a slash.
    return RedirectResponse(f"/ray/{namespace}/{cluster}/{session}/")


@router.get(PREFIX + "/")
def index(request: Request, namespace: str, cluster: str, session: str) -> Response:
    session_path = _session_path(request, namespace, cluster, session)
    build = build_dir()
    if build is None:
        return HTMLResponse(MISSING.replace("{session_path}", session_path), status_code=501)
    return FileResponse(build / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get(PREFIX + "/{asset:path}")
def asset(request: Request, namespace: str, cluster: str, session: str, asset: str) -> Response:
    """A file of the build (scripts, styles, images); nothing outside its folder."""
    _session_path(request, namespace, cluster, session)
    build = build_dir()
    if build is None:
        raise NotFound("Ray's dashboard is not installed on this server: pip install 'ray-history[ray]'")
    path = (build / asset).resolve()
    if not path.is_file() or not path.is_relative_to(build.resolve()):
        raise NotFound(f"no {asset!r} in Ray's dashboard")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    # The build's file names carry their content hash: they never change under one name.
    cache_control = "public, max-age=31536000, immutable" if "/static/" in f"/{asset}" else "no-cache"
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": cache_control})
