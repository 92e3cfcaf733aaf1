"""What every page shares: rendering a template with its JSON twin's address, and the page's state
(filters, sort, paging) read from and written back to its URL, so any view can be pasted to a colleague."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

import ui

from ..access import viewer_of

API = "/api/v1"

templates = Jinja2Templates(directory=str(ui.TEMPLATES))


def format_ms(value: int | None) -> str:
    """Epoch milliseconds as UTC time, to the second: what a person compares across pages."""
    if value is None:
        return "—"
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_duration(value: float | None) -> str:
    """Milliseconds as a person reads a duration: 850 ms, 12.4 s, 3 min 05 s, 2 h 10 min."""
    if value is None:
        return "—"
    if value < 1000:
        return f"{value:.0f} ms"
    seconds = value / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_count(value: int | float | None) -> str:
    return "—" if value is None else f"{value:,}"


def state_badge(state: str | None) -> Markup:
    """A state as a badge whose colour says good, bad or neither (the text says it too)."""
    if not state:
        return Markup('<span class="badge">—</span>')
    tone = {
        "FINISHED": "ok", "SUCCEEDED": "ok", "ALIVE": "ok", "CREATED": "ok", "closed": "ok",
        "FAILED": "bad", "DEAD": "bad", "STOPPED": "warn", "incomplete": "warn", "running": "live",
        "RUNNING": "live", "PENDING": "warn",
    }.get(state, "")  # fmt: skip
    return Markup('<span class="badge {}">{}</span>').format(tone, state)


templates.env.filters.update(ms=format_ms, duration=format_duration, count=format_count, badge=state_badge)


@dataclass(frozen=True)
class PageState:
    """The query string of a page: read it, and make the URL of the same page with some of it changed."""

    path: str
    params: dict[str, str]

    @classmethod
    def of(cls, request: Request) -> PageState:
        return cls(request.url.path, {key: value for key, value in request.query_params.items() if value != ""})

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.params.get(key, default)

    def integer(self, key: str, default: int) -> int:
        value = self.params.get(key)
        try:
            return int(value) if value is not None else default
        except ValueError:
            return default

    def url(self, **changes: Any) -> str:
        """This page with `changes` applied (None removes a parameter); a change of filter goes back to page one."""
        params = dict(self.params)
        if any(key not in ("offset", "limit") for key in changes):
            params.pop("offset", None)
        for key, value in changes.items():
            if value is None or value == "":
                params.pop(key, None)
            else:
                params[key] = str(value)
        return self.path + ("?" + urlencode(params) if params else "")

    def sort_url(self, column: str, default: str | None = None) -> str:
        """Sorting by a column; again to reverse it."""
        current = self.params.get("sort", default)
        return self.url(sort=f"-{column}" if current == column else column)

    def sort_mark(self, column: str, default: str | None = None) -> str:
        current = self.params.get("sort", default) or ""
        return " ▲" if current == column else " ▼" if current == f"-{column}" else ""

    def aria_sort(self, column: str, default: str | None = None) -> str:
        current = self.params.get("sort", default) or ""
        return "ascending" if current == column else "descending" if current == f"-{column}" else "none"


def json_twin(request: Request) -> str:
    """The JSON answer of the same view: the page's URL under /api/v1."""
    query = request.url.query
    return API + request.url.path + (f"?{query}" if query else "")


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("json_url", json_twin(request))
    context["page"] = PageState.of(request)
    context["viewer"] = viewer_of(request)  # who is signed in, for the header
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def session_base(namespace: str, cluster: str, session: str) -> str:
    return f"/sessions/{namespace}/{cluster}/{session}"
