"""The envelopes Ray 2.60's dashboard answers in (`ray.dashboard.routes.rest_response`), so Ray's CLI, SDK
and UI read our answers as they read the live dashboard's."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi.responses import Response

OK = 200
BAD_REQUEST = 400
NOT_FOUND = 404


class RayJSON(Response):
    """JSON encoded by msgspec, as the rest of the server answers (wide task rows, many of them)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


def to_camel_case(snake: str) -> str:
    """Ray's `to_camel_case`: `object_store_memory` -> `objectStoreMemory`, `node:__internal_head__` ->
    `node:InternalHead` (Ray's UI expects exactly these spellings)."""
    first, *rest = snake.split("_")
    return first + "".join(part.title() for part in rest)


def to_google_style(value: dict[str, Any]) -> dict[str, Any]:
    """Ray's `to_google_style`: every key of nested dicts (and dicts in lists) in camelCase."""
    converted: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            item = to_google_style(item)
        elif isinstance(item, list):
            item = [to_google_style(entry) if isinstance(entry, dict) else entry for entry in item]
        converted[to_camel_case(key)] = item
    return converted


def rest_response(status: int, message: str, google_style: bool = True, **data: Any) -> RayJSON:
    """`{"result": <status is 200>, "msg": message, "data": {...}}`, as `rest_response` builds it."""
    body = {"result": status == OK, "msg": message, "data": to_google_style(data) if google_style else data}
    return RayJSON(body, status_code=status)


def list_reply(total: int, num_after_truncation: int, num_filtered: int, result: Any,
               warnings: list[str] | None = None) -> RayJSON:  # fmt: skip
    """A state API answer: `ListApiResponse` (or `SummaryApiResponse`) as `asdict` gives it, under data.result."""
    reply = {"total": total, "num_after_truncation": num_after_truncation, "num_filtered": num_filtered,
             "result": result, "partial_failure_warning": "", "warnings": warnings}  # fmt: skip
    return rest_response(OK, "", google_style=False, result=reply)


def state_error(message: str, status: int = BAD_REQUEST) -> RayJSON:
    """What the state API answers when it refuses a request: `do_reply(BAD_REQUEST, str(e), result=None)`."""
    return rest_response(status, message, google_style=False, result=None)


class StateApiError(ValueError):
    """A refused state API request; the routes answer it with `state_error` (Ray raises ValueError)."""
