"""What every router shares: the server, the opened session, list answers."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import Request
from fastapi.responses import Response

from ..server import HistoryServer
from ..sessions import OpenSession

SESSION_PATH = "/sessions/{namespace}/{cluster}/{session}"


def server_of(request: Request) -> HistoryServer:
    return request.app.state.history  # type: ignore[no-any-return]


def open_session(request: Request, namespace: str, cluster: str, session: str) -> OpenSession:
    return server_of(request).open(namespace, cluster, session)


class FastJSON(Response):
    """JSON encoded by msgspec: FastAPI's own encoder walks every value in Python, several times slower
    on a page of wide rows."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


def listing(total: int, items: list[dict[str, Any]]) -> FastJSON:
    """The shape of every list answer."""
    return FastJSON({"total": total, "items": items})
