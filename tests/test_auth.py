"""Who may see what (issue 13): two teams' sessions in one archive, a server with an auth file, and each
identity (token users, proxy users with groups) seeing exactly its own on every surface: the sessions list and
its totals, the job search, every per-session URL (enumerated from the app's routes: JSON, pages, Ray's
dashboard API and frontend), the pages, SQL over the whole archive (raw parts views included), the comparison.
A session of a namespace one may not see answers exactly as a session that does not exist.

The server is the real app in this process; the proxy's connection is a client at the trusted address, anyone
else a client at another one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from archive import layout
from archive.storage import open_storage
from historyserver.access import EVERYONE, Viewer
from historyserver.app import create_app
from historyserver.server import HistoryServer, ServerSettings
from historyserver.sqlviews import archive_sandbox

from .auth_archive import (
    A_DEV,
    PROXY_GROUPS,
    SEES,
    SESSIONS,
    TRUSTED_PROXY,
    A,
    B,
    access_settings,
    bearer,
    build_archive,
    not_found,
    proxied,
    wait_indexed,
)

SQL_VIEWS = ("sessions", "jobs", "tasks", "actors", "nodes", "workers", "placement_groups", "events", "logs",
             "metrics")  # fmt: skip
RAW_VIEWS = ("events", "logs", "metrics")
TOKEN_USERS = ("alice", "bob", "admin", "eve")
PROXY_USERS = (*PROXY_GROUPS, "dave")
PARAM = re.compile(r"\{([a-z_]+)(?::[a-z]+)?\}")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("auth")
    build_archive(root)
    return root


@pytest.fixture(scope="module")
def server(root: Path) -> HistoryServer:
    return HistoryServer(open_storage(str(root / "archive")), ServerSettings(cache_dir=root / "cache",
                                                                              refresh_interval=3600))  # fmt: skip


@pytest.fixture(scope="module")
def app(root: Path, server: HistoryServer) -> FastAPI:
    return create_app(server, access_settings(root))


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    """Anyone: a client at an address that is not the proxy's. The server started, its job index complete."""
    with TestClient(app, client=("203.0.113.9", 41000)) as started:
        wait_indexed(started, bearer("admin"), len(SESSIONS))
        yield started


@pytest.fixture(scope="module")
def proxy(app: FastAPI, client: TestClient) -> TestClient:
    """The authenticating proxy's connection (the server is already started by `client`)."""
    return TestClient(app, client=(TRUSTED_PROXY, 41001))


def as_(name: str, client: TestClient, proxy: TestClient) -> tuple[TestClient, dict[str, str]]:
    """How `name` reaches the server: a token user directly with the token, a proxy user through the proxy."""
    return (proxy, proxied(name)) if name in PROXY_USERS else (client, bearer(name))


IDENTITIES = TOKEN_USERS + PROXY_USERS


# -- lists, totals, the job search ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", IDENTITIES)
def test_the_sessions_list_and_its_total_hold_exactly_ones_own(name: str, client: TestClient,
                                                              proxy: TestClient) -> None:  # fmt: skip
    via, headers = as_(name, client, proxy)
    answer = via.get("/api/v1/sessions", headers=headers).json()
    assert {(row["namespace"], row["cluster"], row["session"]) for row in answer["items"]} == {
        (ref.namespace, ref.cluster, ref.session) for ref in SEES[name]}  # fmt: skip
    assert answer["total"] == len(SEES[name])
    # Asking for another team's namespace by name finds nothing, as for a namespace that does not exist.
    for ref in set(SESSIONS) - SEES[name]:
        other = via.get("/api/v1/sessions", params={"namespace": ref.namespace}, headers=headers).json()
        assert other == {"total": 0, "items": []}
        assert via.get("/api/v1/sessions", params={"text": ref.session[-6:]}, headers=headers).json()["total"] == 0


@pytest.mark.parametrize("name", IDENTITIES)
def test_the_job_search_and_its_progress_count_only_ones_own(name: str, client: TestClient,
                                                            proxy: TestClient) -> None:  # fmt: skip
    via, headers = as_(name, client, proxy)
    everyone = client.get("/api/v1/jobs", params={"limit": 1000}, headers=bearer("admin")).json()
    own = {ref.namespace for ref in SEES[name]}
    expected = [job for job in everyone["items"] if job["namespace"] in own]
    answer = via.get("/api/v1/jobs", params={"limit": 1000}, headers=headers).json()
    assert answer["items"] == expected and answer["total"] == len(expected)
    assert answer["sessions_indexed"] == len(SEES[name]) and answer["sessions_pending"] == 0
    assert {job["namespace"] for job in everyone["items"]} == {ref.namespace for ref in SESSIONS}


def test_the_catalog_and_comparison_pickers_list_only_ones_own(client: TestClient) -> None:
    for page in ("/sessions", "/jobs", "/compare", "/sql"):
        html = client.get(page, headers={**bearer("alice"), "Accept": "text/html"}).text
        assert A.session in html and A_DEV.session in html, page
        assert B.session not in html and B.namespace not in html, page
    picker = client.get("/api/v1/compare", headers=bearer("bob")).json()["sessions"]
    assert [side["path"] for side in picker] == [B.path]


# -- every per-session URL -----------------------------------------------------------------------------------


def session_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route whose path names a session, included routers walked into."""
    found: list[tuple[str, str]] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            original = getattr(route, "original_router", None)
            if original is not None:  # FastAPI's included router: its routes under its prefix
                walk(list(original.routes), prefix + route.include_context.prefix)
            elif isinstance(route, APIRoute) and "{namespace}" in prefix + route.path:
                found.extend((method, prefix + route.path) for method in sorted(route.methods))

    walk(list(app.routes), "")
    return found


def url(template: str, ref: layout.SessionRef) -> str:
    values = {"namespace": ref.namespace, "cluster": ref.cluster, "session": ref.session, "asset": "index.html"}
    return PARAM.sub(lambda match: values.get(match[1], "x"), template)


def test_the_routes_walked_are_every_surface(app: FastAPI) -> None:
    paths = {path for _, path in session_routes(app)}
    for expected in ("/api/v1/sessions/{namespace}/{cluster}/{session}", "/sessions/{namespace}/{cluster}/{session}",
                     "/api/v1/sessions/{namespace}/{cluster}/{session}/logs/file",
                     "/api/v1/sessions/{namespace}/{cluster}/{session}/metrics/query",
                     "/api/v1/sessions/{namespace}/{cluster}/{session}/timeline",
                     "/api/v1/sessions/{namespace}/{cluster}/{session}/sql",
                     "/ray/{namespace}/{cluster}/{session}/api/v0/tasks", "/ray/{namespace}/{cluster}/{session}/",
                     "/ray/{namespace}/{cluster}/{session}/{asset:path}"):  # fmt: skip
        assert expected in paths
    assert len(paths) > 60


@pytest.mark.parametrize("name", ["alice", "bob", "carol"])
def test_every_per_session_url_of_another_team_is_not_found_as_an_unknown_session_is(
    name: str, app: FastAPI, client: TestClient, proxy: TestClient
) -> None:
    via, headers = as_(name, client, proxy)
    headers = {**headers, "Accept": "application/json"}
    hidden = sorted(set(SESSIONS) - SEES[name], key=lambda ref: ref.path)
    own = sorted(SEES[name], key=lambda ref: ref.path)[0]
    unknown_here = layout.SessionRef(own.namespace, own.cluster, "session_2026-01-01_00-00-00_000000_9")
    for method, template in session_routes(app):
        for ref in (*hidden, unknown_here):
            answer = via.request(method, url(template, ref), headers=headers, json={} if method == "POST" else None)
            body = _json(answer) if method != "HEAD" else not_found(ref)  # a HEAD answer has no body
            assert (answer.status_code, body) == (404, not_found(ref)), (method, template, ref.path)
        # One's own session is there on every URL: what a route may not find is a task, a file... never it.
        answer = via.request(method, url(template, own), headers=headers, json={} if method == "POST" else None)
        assert answer.status_code == 200 or not_found(own) != _json(answer), (template, answer.text[:200])


def _json(answer: Any) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None


@pytest.mark.parametrize("name", ["alice", "dave"])
def test_ones_own_session_answers_on_every_surface(name: str, client: TestClient, proxy: TestClient) -> None:
    via, headers = as_(name, client, proxy)
    base = f"/api/v1/sessions/{A.path}"
    for path in ("", "/tasks", "/actors", "/jobs", "/nodes", "/workers", "/events", "/logs", "/metrics",
                 "/timeline", "/timeline/bars", "/sql?q=SELECT+count(*)+AS+n+FROM+tasks"):  # fmt: skip
        assert via.get(base + path, headers=headers).status_code == 200, path
    first = via.get(base + "/logs", headers=headers).json()["items"][0]
    answer = via.get(base + "/logs/file", params={"node_id": first["node_id"], "filename": first["filename"]},
                     headers=headers)  # fmt: skip
    assert answer.status_code == 200 and answer.content
    ray = f"/ray/{A.path}"
    assert via.get(f"{ray}/api/v0/tasks", headers=headers).json()["data"]["result"]["total"] > 0
    assert via.get(f"{ray}/", headers=headers).status_code in (200, 501)  # 501: Ray's frontend not installed
    assert via.get(f"/sessions/{A.path}/tasks", headers={**headers, "Accept": "text/html"}).status_code == 200


def test_a_comparison_with_another_teams_session_is_not_found(client: TestClient) -> None:
    answer = client.get("/api/v1/compare", params={"a": A.path, "b": B.path}, headers=bearer("alice"))
    assert (answer.status_code, answer.json()) == (404, not_found(B))
    answer = client.get("/api/v1/compare", params={"a": A.path, "b": A.path}, headers=bearer("alice"))
    assert answer.status_code == 200


# -- SQL -----------------------------------------------------------------------------------------------------


def sql(via: TestClient, headers: dict[str, str], query: str, session: str | None = None) -> Any:
    answer = via.post("/api/v1/sql", json={"sql": query, "session": session}, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize("name", IDENTITIES)
def test_sql_over_the_whole_archive_sees_only_ones_own_in_every_view(name: str, client: TestClient,
                                                                    proxy: TestClient) -> None:  # fmt: skip
    via, headers = as_(name, client, proxy)
    own = {ref.namespace for ref in SEES[name]}
    for view in SQL_VIEWS:
        rows = sql(via, headers, f"SELECT DISTINCT namespace, session FROM {view}")
        found = {row["namespace"] for row in rows}
        # Every view holds something of every session (the admin's view says so): one's own, all of it.
        everyone = {row["namespace"] for row in sql(client, bearer("admin"), f"SELECT DISTINCT namespace FROM {view}")}
        assert everyone == {ref.namespace for ref in SESSIONS}, view
        assert found == own, (view, found)
    counts = sql(via, headers, "SELECT (SELECT count(*) FROM sessions) AS sessions, (SELECT count(*) FROM events) "
                 "AS events")[0]  # fmt: skip
    assert counts["sessions"] == len(SEES[name])


def test_sql_on_another_teams_session_is_not_found(client: TestClient) -> None:
    answer = client.post("/api/v1/sql", json={"sql": "SELECT 1", "session": B.path}, headers=bearer("alice"))
    assert (answer.status_code, answer.json()) == (404, not_found(B))
    answer = client.get("/api/v1/sql", params={"q": "SELECT 1", "session": B.path}, headers=bearer("alice"))
    assert (answer.status_code, answer.json()) == (404, not_found(B))
    assert sql(client, bearer("bob"), "SELECT count(*) AS n FROM tasks", B.path)[0]["n"] > 0


def test_the_sql_views_read_only_the_viewers_namespaces_files(server: HistoryServer, root: Path) -> None:
    """Below the statement checks, DuckDB's own allowed directories: a restricted viewer's database cannot
    open another namespace's file even from a trusted cursor, where the views' own files open."""
    alice = Viewer("alice", ("team-a", "team-a-*"))
    theirs = next((root / "archive" / "events" / B.namespace).rglob("*.parquet"))
    mine = next((root / "archive" / "events" / A.namespace).rglob("*.parquet"))
    with archive_sandbox(server, viewer=alice) as sandbox, sandbox.cursor() as cur:
        assert cur.execute(f"SELECT count(*) FROM read_parquet('{mine}')").fetchone()[0] > 0
        with pytest.raises(duckdb.PermissionException):
            cur.execute(f"SELECT count(*) FROM read_parquet('{theirs}')").fetchall()
    with archive_sandbox(server, viewer=EVERYONE) as sandbox, sandbox.cursor() as cur:
        assert cur.execute(f"SELECT count(*) FROM read_parquet('{theirs}')").fetchone()[0] > 0
    # A viewer who sees nothing still has every view, each empty.
    with archive_sandbox(server, viewer=Viewer("eve", ())) as sandbox:
        for view in SQL_VIEWS:
            assert sandbox.run(f"SELECT count(*) AS n FROM {view}").table.to_pylist() == [{"n": 0}], view


# -- without an identity -------------------------------------------------------------------------------------


def test_no_token_is_a_401_for_the_api_and_a_way_to_sign_in_for_a_page(client: TestClient, app: FastAPI) -> None:
    for path in ("/api/v1/sessions", "/api/v1/jobs", f"/api/v1/sessions/{A.path}/tasks", "/openapi.json",
                 f"/ray/{A.path}/api/v0/tasks", "/api/v1/no-such-route", "/metricsz"):  # fmt: skip
        answer = client.get(path)
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"] == 'Bearer realm="ray-history"'
    answer = client.post("/api/v1/sql", json={"sql": "SELECT 1"})
    assert answer.status_code == 401
    for path in ("/sessions", f"/sessions/{A.path}/tasks?state=FAILED", "/docs", f"/ray/{A.path}/", "/"):
        answer = client.get(path, headers={"Accept": "text/html"}, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/login?next=" + quote(path, safe="")
    for method, template in session_routes(app):  # a URL of any session: no hint whether it exists
        assert client.request(method, url(template, B), headers={"Accept": "application/json"}).status_code == 401


def test_a_bad_token_is_refused_as_invalid(client: TestClient) -> None:
    for header in ("Bearer not-a-token-of-anyone", "Bearer ", "Basic YWxpY2U6eA==", "bearer" + bearer("bob")[
            "Authorization"][6:] + "x"):  # fmt: skip
        answer = client.get("/api/v1/sessions", headers={"Authorization": header, "Accept": "text/html"})
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == 'Bearer realm="ray-history", error="invalid_token"'
    # The scheme's name is not case-sensitive.
    assert client.get("/api/v1/sessions", headers={"Authorization": "bearer " + bearer("bob")["Authorization"][7:]}
                      ).json()["total"] == 1  # fmt: skip


def test_probes_and_public_metrics_need_no_identity(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    # The server's own counters: no namespace, session or user is named in them.
    for ref in SESSIONS:
        assert ref.namespace not in metrics.text and ref.session not in metrics.text
    for name in IDENTITIES:
        assert f'"{name}"' not in metrics.text
    assert 'ray_history_server_auth_refused_total{reason="no_credentials"}' in metrics.text
    assert client.get("/static/app.css").status_code == 200


def test_private_metrics_need_an_identity(root: Path, server: HistoryServer) -> None:
    private = create_app(server, access_settings(root, metrics_public=False))
    client = TestClient(private)  # not started: the shared server is, and /metrics needs no catalog
    assert client.get("/metrics").status_code == 401
    # Private metrics may name every namespace: only for who sees them all.
    for name in ("eve", "alice"):
        assert client.get("/metrics", headers=bearer(name)).status_code == 403
    assert client.get("/metrics", headers=bearer("admin")).status_code == 200
    assert client.get("/healthz").status_code == 200


# -- the proxy -----------------------------------------------------------------------------------------------


def test_a_forged_proxy_header_from_an_untrusted_address_is_ignored(client: TestClient) -> None:
    forged = proxied("carol")
    answer = client.get("/api/v1/sessions", headers=forged)
    assert answer.status_code == 401
    # With a token, the token decides: the forged user and groups add nothing.
    answer = client.get("/api/v1/sessions", headers={**forged, "X-Forwarded-User": "admin", **bearer("alice")})
    assert {row["namespace"] for row in answer.json()["items"]} == {A.namespace, A_DEV.namespace}
    page = client.get("/sessions", headers={**forged, "Accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    metrics = client.get("/metrics").text
    assert re.search(r"^ray_history_server_auth_proxy_headers_ignored_total [1-9]", metrics, re.M)


def test_the_proxy_is_believed_only_for_one_user_header(proxy: TestClient) -> None:
    assert proxy.get("/api/v1/sessions").status_code == 401  # the proxy's address alone is nobody
    twice = [("X-Forwarded-User", "carol"), ("X-Forwarded-User", "admin")]
    assert proxy.get("/api/v1/sessions", headers=twice).status_code == 401
    assert proxy.get("/api/v1/sessions", headers={"X-Forwarded-User": " "}).status_code == 401
    # Groups the file does not name give nothing: a stranger with them sees no session.
    answer = proxy.get("/api/v1/sessions", headers={"X-Forwarded-User": "zed", "X-Forwarded-Groups": "admins"})
    assert answer.json() == {"total": 0, "items": []}
    # Groups given in two headers count as one list.
    answer = proxy.get("/api/v1/sessions", headers=[("X-Forwarded-User", "zed"), ("X-Forwarded-Groups", "a-readers"),
                                                     ("X-Forwarded-Groups", "b-readers")])  # fmt: skip
    assert answer.json()["total"] == 2


def test_the_page_shows_who_is_signed_in(client: TestClient, proxy: TestClient) -> None:
    html = client.get("/sessions", headers={**bearer("alice"), "Accept": "text/html"}).text
    assert re.search(r"Signed in as <strong data-signed-in>alice</strong>", html)
    html = proxy.get("/sessions", headers={**proxied("carol"), "Accept": "text/html"}).text
    assert "data-signed-in>carol<" in html and "groups: b-readers, unknown-group" in html
    assert 'action="/logout"' not in html  # a proxy user signs out at the proxy


# -- the browser's login, without a browser (tests/test_auth_browser.py has Chromium) -------------------------


def test_a_login_sets_a_cookie_holding_only_a_reference(app: FastAPI, client: TestClient) -> None:
    browser = TestClient(app, client=("198.51.100.4", 42000))
    answer = browser.post("/login", data={"token": TOKENS_OF["alice"], "next": f"/sessions/{A.path}?x=1"},
                          follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303 and answer.headers["location"] == f"/sessions/{A.path}?x=1"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=43200" in cookie and "Path=/" in cookie
    reference = browser.cookies["ray_history_login"]
    assert TOKENS_OF["alice"] not in cookie and len(reference) >= 40
    listed = browser.get("/api/v1/sessions").json()
    assert {row["namespace"] for row in listed["items"]} == {A.namespace, A_DEV.namespace}
    assert browser.get(f"/api/v1/sessions/{B.path}").status_code == 404
    # Signing out ends the login on the server: the same cookie, sent again, is nobody's.
    assert browser.post("/logout", follow_redirects=False).headers["location"] == "/login"
    again = TestClient(app, client=("198.51.100.4", 42001), cookies={"ray_history_login": reference})
    assert again.get("/api/v1/sessions").status_code == 401
    page = again.get("/sessions", headers={"Accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and 'ray_history_login=""' in page.headers["set-cookie"]


def test_a_login_refuses_a_bad_token_and_goes_nowhere_else(app: FastAPI) -> None:
    browser = TestClient(app, client=("198.51.100.5", 42002))
    answer = browser.post("/login", data={"token": "not-it", "next": "/jobs"})
    assert answer.status_code == 401 and "That token is not valid." in answer.text and not browser.cookies
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "/login", "jobs"):
        answer = browser.post("/login", data={"token": TOKENS_OF["bob"], "next": target}, follow_redirects=False)
        assert answer.headers["location"] == "/", target
    # A form posted from another site is refused (the browser says where it comes from).
    answer = browser.post("/login", data={"token": TOKENS_OF["bob"]}, headers={"Origin": "https://evil.example"})
    assert answer.status_code == 403
    assert browser.post("/login", data={"token": "x" * 20_000}).status_code == 413
    assert "Your token" in browser.get("/login").text


def test_the_login_page_of_a_proxy_only_server_sends_people_to_the_proxy(root: Path, server: HistoryServer) -> None:
    import dataclasses

    settings = access_settings(root)
    assert settings.auth is not None
    only_proxy = dataclasses.replace(settings.auth, users=())
    html = TestClient(create_app(server, dataclasses.replace(settings, auth=only_proxy))).get("/login").text
    assert "Your token" not in html and "sign-in proxy" in html


TOKENS_OF = {name: bearer(name)["Authorization"].removeprefix("Bearer ") for name in TOKEN_USERS}


# -- Ray's own CLI and SDK ------------------------------------------------------------------------------------


def test_rays_cli_sends_the_token_the_server_takes(client: TestClient) -> None:
    """Ray's clients (`ray list`, the state SDK, `ray job`) send RAY_AUTH_TOKEN as a bearer token when
    RAY_AUTH_MODE=token: the header Ray's own code makes (imported; no Ray runs) opens the user's sessions."""
    pytest.importorskip("ray")
    code = ("import json; from ray._private.authentication.http_token_authentication import "
            "get_auth_headers_if_auth_enabled as headers; print(json.dumps(headers({})))")  # fmt: skip
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKENS_OF["alice"]}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    headers = json.loads(done.stdout.splitlines()[-1])
    assert headers == {"authorization": f"Bearer {TOKENS_OF['alice']}"}
    assert client.get(f"/ray/{A.path}/api/v0/tasks", headers=headers).status_code == 200
    answer = client.get(f"/ray/{B.path}/api/v0/tasks", headers=headers)
    assert (answer.status_code, answer.json()) == (404, not_found(B))


# -- logins shared by replicas -------------------------------------------------------------------------------


def test_a_login_made_on_one_replica_holds_on_another_and_signing_out_ends_it_everywhere(
    root: Path, app: FastAPI, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas share nothing but the archive (deploy/README.md): a login is a signed record there, named by the
    digest of the cookie's reference, so any replica answers a signed-in browser, with no sticky sessions."""
    import historyserver.identity

    replica = create_app(HistoryServer(open_storage(str(root / "archive")), ServerSettings(
        cache_dir=root / "replica-cache", refresh_interval=3600, index_jobs=False)), access_settings(root))  # fmt: skip
    first = TestClient(app, client=("198.51.100.6", 42003))
    answer = first.post("/login", data={"token": TOKENS_OF["bob"]}, follow_redirects=False)
    reference = first.cookies["ray_history_login"]
    record = root / "archive" / "logins" / (hashlib.sha256(reference.encode()).hexdigest() + ".json")
    assert record.exists()  # named by the reference's digest: the archive never holds the reference
    for stored in (root / "archive" / "logins").iterdir():
        assert reference not in stored.name + stored.read_text() and TOKENS_OF["bob"] not in stored.read_text()
    with TestClient(replica, client=("198.51.100.6", 42004), cookies={"ray_history_login": reference}) as second:
        listed = second.get("/api/v1/sessions").json()
        assert [row["namespace"] for row in listed["items"]] == [B.namespace]
        # Signing out on the first replica reaches the second once it reads the archive again.
        monkeypatch.setattr(historyserver.identity, "REVALIDATE_S", 0.0)
        first.post("/logout")
        assert not record.exists()
        assert second.get("/api/v1/sessions").status_code == 401
        # A record nobody signed with the auth file's secret is no login, whatever it says.
        forged = "forged-reference-0123456789"
        (root / "archive" / "logins" / (hashlib.sha256(forged.encode()).hexdigest() + ".json")).write_text(
            json.dumps({"user": "admin", "expires_ms": 2**50, "mac": "0" * 64}))  # fmt: skip
        assert second.get("/api/v1/sessions", cookies={"ray_history_login": forged}).status_code == 401
    assert answer.status_code == 303
