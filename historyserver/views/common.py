"""What every view shares: the server, the opened session, and one endpoint serving two faces.

A view is a function that returns data. `Views.get` serves it as JSON under /api/v1 and, when it has a
template, as an HTML page at the same path without the prefix: every page has a JSON twin from the
same function, and no page runs a query the API lacks.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..access import viewer_of
from ..errors import BadRequest
from ..server import HistoryServer
from ..sessions import OpenSession
from .pages import render

SESSION_PATH = "/sessions/{namespace}/{cluster}/{session}"
API = "/api/v1"


def server_of(request: Request) -> HistoryServer:
    return request.app.state.history  # type: ignore[no-any-return]


def open_session(request: Request, namespace: str, cluster: str, session: str) -> OpenSession:
    return server_of(request).open(namespace, cluster, session, viewer_of(request))


def session_of_path(request: Request) -> OpenSession:
    """The session the request's path names (/.../{namespace}/{cluster}/{session}/...), opened for its viewer."""
    params = request.path_params
    return open_session(request, params["namespace"], params["cluster"], params["session"])


class FastJSON(Response):
    """JSON encoded by msgspec: FastAPI's own encoder walks every value in Python, several times slower
    on a page of wide rows."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


_UNITS_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_age_ms(value: str) -> int:
    """'90m', '24h' or '7d' in milliseconds; BadRequest with the expected form otherwise."""
    number, unit = value[:-1], value[-1:].lower()
    if unit not in _UNITS_MS or not number.isdigit() or not 0 < int(number) <= 100_000:
        raise BadRequest(f"since must be a number of minutes, hours or days such as 90m, 24h or 7d, not {value!r}")
    return int(number) * _UNITS_MS[unit]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def listing(total: int, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The shape of every list answer."""
    return {"total": total, "items": items}


# What a list page shows when its filters are refused: no rows, the reason, and the filters to mend.
NO_ROWS: dict[str, Any] = {"total": 0, "items": []}


@dataclass(frozen=True)
class Kept:
    """An answer encoded once and kept for the same request again (historyserver.answers): the JSON twin sends
    its bytes as they are, the page decodes them."""

    body: bytes


def kept(request: Request, opened: OpenSession, compute: Callable[[], Any]) -> Kept:
    """`compute()`'s answer for this request of `opened`, from the kept answers when asked before. For lists
    of a big session (a page of a million tasks costs milliseconds of CPU, many people look at the same
    first pages); the request has passed every check of the session (it exists, the viewer may see it)."""
    name = request.url.path.removeprefix(API)  # the page and its JSON twin share one answer
    key = opened.answer_key(name, request.query_params.multi_items())
    return Kept(server_of(request).answers.get(key, lambda: msgspec.json.encode(compute())))


class Views:
    """A resource's routes: `api` (mounted under /api/v1) and `pages` (mounted at the root)."""

    def __init__(self, tag: str) -> None:
        self.api = APIRouter(tags=[tag])
        self.pages = APIRouter(include_in_schema=False)

    def get(self, path: str, template: str | None = None, refused: dict[str, Any] | None = None,
            **options: Any) -> Callable[[Callable[..., Any]], Any]:  # fmt: skip
        """Serve `view(request, ...)` as JSON at /api/v1{path}, and as `template` at {path} if given.

        The view returns data (or a Response, served as it is: a download). The page's template gets it
        as `data`, with the path parameters, so a template never asks for anything on its own. With
        `refused` (a list page), parameters the view refuses still render the page, with that data and
        the reason (status 400), so its filters can be mended where they were typed.
        """

        def register(view: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(view)
            def as_json(**arguments: Any) -> Response:
                data = view(**arguments)
                if isinstance(data, Kept):
                    return Response(data.body, media_type=FastJSON.media_type)
                return data if isinstance(data, Response) else FastJSON(data)

            if view.__annotations__.get("return") in ("Kept", Kept):
                # What the kept bytes hold, for the API's docs: the view's data, not the wrapper.
                options.setdefault("response_model", dict[str, Any])
            self.api.get(path, **options)(as_json)
            if template is not None:

                @functools.wraps(view)
                def as_page(**arguments: Any) -> Response:
                    context = page_context({name: value for name, value in arguments.items() if name != "request"})
                    try:
                        data = view(**arguments)
                    except BadRequest as exc:
                        if refused is None:
                            raise
                        return render(arguments["request"], template, 400, data=refused, refused=str(exc), **context)
                    if isinstance(data, Response):
                        return data
                    if isinstance(data, Kept):
                        data = msgspec.json.decode(data.body)
                    return render(arguments["request"], template, data=data, **context)

                self.pages.get(path)(as_page)
            return view

        return register


def page_context(arguments: dict[str, Any]) -> dict[str, Any]:
    """The path parameters a page's header needs (the session it belongs to, if any)."""
    context = dict(arguments)
    if {"namespace", "cluster", "session"} <= arguments.keys():
        context["session_path"] = f"/sessions/{arguments['namespace']}/{arguments['cluster']}/{arguments['session']}"
    return context
