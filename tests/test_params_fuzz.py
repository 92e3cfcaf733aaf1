"""No query string makes the server answer 500: every endpoint's query parameters, property-based.

The routes and their declared query parameters are read from the app itself (every route FastAPI knows, the
pages and Ray's prefix too, checked against the OpenAPI document), so an endpoint added later is fuzzed
without being listed here; Ray's dashboard API reads its parameters from the query string by hand, so those
names are read from the source of the module each route's function is in (and of the modules of its package it
imports). Each route gets a fixed budget of derandomized examples (the same ones on every run, in CI too) over
the captured archive, with real ids in the path so the parameters reach the queries.
A 503 with Retry-After (the server asking to be asked later) is an answer; any other 5xx is a failure.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import CAPTURED_NODE, CAPTURED_SESSION

EXAMPLES_PER_ROUTE = 8
# What Ray's API reads by hand: query.get("limit"), query["limit"], multi["filter_keys"]...
HAND_READ = re.compile(r"""(?:query|query_params|multi)(?:\.get\(|\.getlist\(|\[)\s*"([a-z_]+)\"""")
SIBLINGS = re.compile(r"^from \.(\w+) import", re.MULTILINE)
SIBLING_LISTS = re.compile(r"^from \. import ([\w, ]+)$", re.MULTILINE)
# Values that broke something once, or that a careless parser would choke on.
NASTY = ["", " ", "-1", "0", "-0", "1e3", "NaN", "inf", "-inf", "99999999999999999999", "-99999999999999999999",
         "9223372036854775807", "9223372036854775808", "-9223372036854775809", "18446744073709551616", "0x10",
         "\uff11\uff12", "true", "yes", "null", "[]", "{}", "'", '"', "\\", "%", "%00", "\x00", "\r\n", "a\nb",
         "../../etc", "-", "--", "-start_time_ms", "rowid", "name; DROP TABLE tasks", "*", "é", "\U0001f600",
         "x" * 10_000, "2026-11-28T19:03:57Z", "2026-13-45T99:99:99", "1970-01-01", "P1D", "90m", "24h", "7d",
         "0m", "100001d", "=", "a=b", "key=", "=value", "(", "[a-", "(?P<x", "a{99999}", "stdout", "stderr",
         "node", "cluster", "json", "csv", "parquet", "table", "sum", "avg", "max", "min", "state",
         "function"]  # fmt: skip
TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
INTEGERS = st.one_of(st.integers(-(2**70), 2**70).map(str), st.integers(-5, 2_000).map(str))
FLOATS = st.floats(allow_nan=True, allow_infinity=True).map(repr)
VALUE = st.one_of(st.sampled_from(NASTY), TEXT, INTEGERS, FLOATS)


def routes_of(app: FastAPI) -> list[tuple[str, set[str], list[str]]]:
    """(path, methods, query parameter names) of every route of the app, included routers walked into: those
    it declares, and those its module reads by hand."""
    found: list[tuple[str, set[str], list[str]]] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            original = getattr(route, "original_router", None)
            if original is not None:  # FastAPI's lazily included router: its routes under its prefix
                walk(list(original.routes), prefix + route.include_context.prefix)
            elif isinstance(route, APIRoute):
                names = [param.alias for param in route.dependant.query_params]
                by_hand = [name for name in hand_read(route.endpoint) if name not in names]
                found.append((prefix + route.path, set(route.methods), names + by_hand))

    walk(list(app.routes), "")
    return found


def hand_read(endpoint: Any) -> list[str]:
    """The query parameters the endpoint's module (or a module of its package it imports) reads by hand."""
    module = inspect.getmodule(inspect.unwrap(endpoint))
    if module is None or module.__file__ is None:
        return []
    source = Path(module.__file__).read_text()
    siblings = set(SIBLINGS.findall(source)) | {name.strip() for names in SIBLING_LISTS.findall(source)
                                                for name in names.split(",")}  # fmt: skip
    for name in siblings:
        sibling = Path(module.__file__).with_name(f"{name}.py")
        if sibling.exists():
            source += sibling.read_text()
    return sorted(set(HAND_READ.findall(source)))


@pytest.fixture(scope="module")
def fuzz_client(client: TestClient) -> Iterator[TestClient]:
    # The shared app (already started), answering a 500 as a 500 instead of raising it here.
    yield TestClient(client.app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def real_ids(client: TestClient) -> dict[str, str]:
    """Ids that exist in the captured session, so that a path reaches the queries behind it."""
    base = f"/api/v1/sessions/default/local/{CAPTURED_SESSION}"

    def first(kind: str, column: str) -> str:
        items = client.get(f"{base}/{kind}", params={"limit": 1}).json()["items"]
        return str(items[0][column]) if items else "none"

    job = first("jobs", "job_id")
    return {"namespace": "default", "cluster": "local", "session": CAPTURED_SESSION, "node_id": CAPTURED_NODE,
            "task_id": first("tasks", "task_id"), "actor_id": first("actors", "actor_id"), "job_id": job,
            "job_or_submission_id": job, "media_type": "file", "asset": "index.html"}  # fmt: skip


def _all_routes() -> list[tuple[str, list[str]]]:
    """Collected once, from an app over an empty archive: the routes do not depend on the archive."""
    import tempfile

    from archive.storage import open_storage
    from historyserver.app import create_app
    from historyserver.server import HistoryServer, ServerSettings

    root = Path(tempfile.mkdtemp(prefix="rh-routes-"))
    app = create_app(HistoryServer(open_storage(str(root / "archive")), ServerSettings(cache_dir=root / "cache")))
    routes = [(path, names) for path, methods, names in routes_of(app) if "GET" in methods]
    declared = {path for path, _ in routes}
    # The OpenAPI document lists the API's routes: every one must be among those walked.
    missing = {path for path in app.openapi()["paths"] if path not in declared}
    assert not missing, f"routes the walk missed: {missing}"
    return routes


ROUTES = _all_routes()


def test_every_route_is_fuzzed() -> None:
    paths = {path for path, _ in ROUTES}
    for expected in ("/api/v1/sessions", "/sessions", "/api/v1/jobs", "/api/v1/sql", "/sql",
                     "/api/v1/sessions/{namespace}/{cluster}/{session}/tasks",
                     "/ray/{namespace}/{cluster}/{session}/api/v0/tasks"):  # fmt: skip
        assert expected in paths
    assert len(ROUTES) > 60
    names = dict(ROUTES)
    assert {"limit", "filter_keys", "detail"} <= set(names["/ray/{namespace}/{cluster}/{session}/api/v0/tasks"])
    assert {"glob", "node_id"} <= set(names["/ray/{namespace}/{cluster}/{session}/api/v0/logs"])


def _url(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(?::path)?\}", lambda match: ids.get(match.group(1), "x"), path)


def _assert_answered(answer: Any, url: str, params: list[tuple[str, str]]) -> None:
    status = answer.status_code
    asked_later = status == 503 and "retry-after" in answer.headers
    assert status < 500 or asked_later, f"{status} for GET {url} {params}: {answer.text[:500]}"


@pytest.mark.parametrize(("path", "names"), ROUTES, ids=[path for path, _ in ROUTES])
def test_no_query_string_is_a_500(fuzz_client: TestClient, real_ids: dict[str, str], path: str,
                                  names: list[str]) -> None:  # fmt: skip
    url = _url(path, real_ids)
    if not names:
        names = ["limit", "offset"]  # parameters nobody declared must be ignored, not break anything

    @settings(max_examples=EXAMPLES_PER_ROUTE, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.lists(st.tuples(st.sampled_from(names), VALUE), min_size=1, max_size=4))
    def check(params: list[tuple[str, str]]) -> None:
        _assert_answered(fuzz_client.get(url, params=params), url, params)

    check()


@pytest.mark.parametrize(("path", "names"), [(path, names) for path, names in ROUTES if names],
                         ids=[path for path, names in ROUTES if names])  # fmt: skip
def test_each_parameter_with_each_nasty_value(fuzz_client: TestClient, real_ids: dict[str, str], path: str,
                                              names: list[str]) -> None:  # fmt: skip
    """Every declared parameter alone with the values most likely to break a parser (huge, negative, empty,
    not a number, control characters): deterministic, so a regression is named by its value."""
    url = _url(path, real_ids)
    failed = []
    for name in names:
        for value in ("99999999999999999999", "-1", "-99999999999999999999", "abc", "", "1e400", "\r\n", "x" * 5000):
            answer = fuzz_client.get(url, params=[(name, value)])
            if answer.status_code >= 500 and not (answer.status_code == 503 and "retry-after" in answer.headers):
                failed.append(f"{answer.status_code} for {name}={value[:30]!r}: {answer.text[:200]}")
    assert not failed, f"GET {url}:\n" + "\n".join(failed)
