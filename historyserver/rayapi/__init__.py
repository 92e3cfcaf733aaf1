"""Ray 2.60's dashboard HTTP API for one finished session, under /ray/{namespace}/{cluster}/{session}/: point
Ray's CLI (`ray list tasks --address http://HOST:8080/ray/ns/cluster/session`), SDK or UI at it."""

from __future__ import annotations

from fastapi import APIRouter

from . import dashboard, jobs, libraries, logs, state, timeline

PREFIX = "/ray/{namespace}/{cluster}/{session}"

router = APIRouter(prefix=PREFIX, include_in_schema=False)
for _module in (state, timeline, logs, jobs, dashboard, libraries):
    router.include_router(_module.router)
