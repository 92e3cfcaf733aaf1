"""Authentication as people and operators meet it: signing in with a token in Chromium (a shared link survives
the detour through the login page; the cookie is only a reference; signing out ends it), and `ray-history serve`
itself started with an auth file (the proxy is recognised by the connection's address, never by a forwarded
one; a bad file stops it with the line at fault; no auth file beyond loopback warns loudly)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ray_history.localray import free_port, terminate, wait_healthy

from .auth_archive import A_DEV, AUTH_FILE, A, B, access_settings, bearer, build_archive, not_found
from .uiserver import Watch, served

RAY_HISTORY = str(Path(sys.executable).with_name("ray-history"))
ALICE = bearer("alice")["Authorization"].removeprefix("Bearer ")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("auth-browser")
    build_archive(root)
    return root


@pytest.fixture(scope="module")
def url(root: Path) -> Iterator[str]:
    with served(root / "archive", root / "cache", access_settings(root), refresh_interval=3600) as base:
        yield base


@pytest.fixture
def tab(browser: Any, url: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    watch = Watch(url)
    watch.attach(opened)
    yield opened
    context.close()
    # A refused token (401) and another team's session (404) are what Chromium reports as failed resources:
    # the only errors allowed.
    watch.errors = [error for error in watch.errors if not re.search(r"status of 40[14] ", error)]
    watch.assert_clean()


def test_a_shared_link_goes_through_the_login_and_lands_where_it_pointed(tab: Any, url: str) -> None:
    link = f"{url}/sessions/{A.path}/tasks?state=FAILED"
    tab.goto(link)
    tab.wait_for_url(re.compile(r".*/login\?next=.*"))
    assert tab.get_by_label("Your token").is_visible()
    tab.get_by_label("Your token").fill("not the token")
    tab.get_by_role("button", name="Sign in").click()
    assert tab.get_by_role("alert").inner_text() == "That token is not valid."
    tab.get_by_label("Your token").fill(ALICE)
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_url(link)
    assert tab.locator("[data-signed-in]").inner_text() == "alice"
    # The cookie is out of the page's reach, holds a reference and not the token, and expires.
    assert "ray_history_login" not in tab.evaluate("document.cookie")
    (cookie,) = [c for c in tab.context.cookies() if c["name"] == "ray_history_login"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["value"] != ALICE
    assert 11 * 3600 < cookie["expires"] - time.time() <= 12 * 3600
    assert ALICE not in tab.url

    tab.goto(f"{url}/sessions")
    rows = tab.locator("table tbody tr").all_inner_texts()
    assert any(A.session in row for row in rows) and any(A_DEV.session in row for row in rows)
    assert not any(B.session in row for row in rows)
    # Another team's session is not there, as a session that never was.
    answer = tab.goto(f"{url}/sessions/{B.path}")
    assert answer.status == 404 and not_found(B)["error"] in tab.content()
    assert tab.goto(f"{url}/ray/{B.path}/").status == 404
    # The JSON twin and the SQL console use the same login.
    assert tab.goto(f"{url}/api/v1/sessions").status == 200
    tab.goto(f"{url}/sql?q=SELECT+DISTINCT+namespace+FROM+events+ORDER+BY+1")
    rows = [row.split("\t")[-1] for row in tab.locator("table tbody tr").all_inner_texts()]
    assert rows == [A.namespace, A_DEV.namespace]

    tab.get_by_role("button", name="Sign out").click()
    tab.wait_for_url(f"{url}/login")
    assert not [c for c in tab.context.cookies() if c["name"] == "ray_history_login"]
    tab.goto(f"{url}/sessions")
    tab.wait_for_url(re.compile(r".*/login\?next=%2Fsessions$"))


# -- `ray-history serve` -------------------------------------------------------------------------------------


def start(root: Path, *args: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "RAY_HISTORY_ARCHIVE": str(root / "archive"), "RAY_HISTORY_CACHE_DIR": str(root / "c")}
    with open(log, "wb") as out:
        process = subprocess.Popen([RAY_HISTORY, "serve", "--listen", f"127.0.0.1:{port}", *args], stdout=out,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_ready(base)
    return process, base


def wait_ready(base: str) -> None:
    """Until /readyz is 200: the port answers before the server's code is loaded, and the catalog is read after."""
    wait_healthy(base)
    deadline = time.monotonic() + 60
    while httpx.get(f"{base}/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)


def test_serve_trusts_the_proxys_own_address_never_a_forwarded_one(root: Path, tmp_path: Path) -> None:
    # The proxy is elsewhere (10.0.0.0/8); this test's connections come from 127.0.0.1.
    auth = tmp_path / "auth.toml"
    auth.write_text(AUTH_FILE.replace('trusted = ["127.0.0.1/32", "::1/128"]', 'trusted = ["10.0.0.0/8"]'))
    process, base = start(root, "--auth-file", str(auth), log=tmp_path / "serve.log")
    try:
        forged = {"X-Forwarded-For": "10.1.2.3", "X-Real-IP": "10.1.2.3", "Forwarded": "for=10.1.2.3",
                  "X-Forwarded-User": "admin", "X-Forwarded-Groups": "a-readers,b-readers"}  # fmt: skip
        answer = httpx.get(f"{base}/api/v1/sessions", headers=forged)
        assert answer.status_code == 401
        sessions = httpx.get(f"{base}/api/v1/sessions", headers=bearer("bob"), timeout=30).json()
        assert [row["namespace"] for row in sessions["items"]] == [B.namespace]
    finally:
        terminate(process, 20)
    assert "NO AUTHENTICATION" not in (tmp_path / "serve.log").read_text()


def test_serve_refuses_a_bad_auth_file_saying_where(root: Path, tmp_path: Path) -> None:
    auth = tmp_path / "auth.toml"
    auth.write_text('[[users]]\nname = "alice"\nnamespace = ["team-a"]\ntoken = "0123456789abcdef0"\n')
    done = subprocess.run([RAY_HISTORY, "serve", "--archive", str(root / "archive"), "--auth-file", str(auth)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode != 0
    assert f"{auth}: line 3: user 1 namespace: unknown key; use name, token, token_sha256, namespaces" in done.stderr
    assert "0123456789abcdef0" not in done.stderr
    done = subprocess.run([RAY_HISTORY, "serve", "--archive", str(root / "archive"), "--metrics-private"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode != 0 and "--metrics-private needs --auth-file" in done.stderr


def test_serve_without_an_auth_file_beyond_loopback_warns_loudly(root: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([RAY_HISTORY, "serve", "--archive", str(root / "archive"), "--cache-dir",
                                    str(tmp_path / "c"), "--listen", f"0.0.0.0:{port}"], stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        # As today: everything, to anyone.
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/sessions", timeout=30).status_code == 200
    finally:
        terminate(process, 20)
    text = log.read_text()
    assert re.search(r"WARNING ray_history: NO AUTHENTICATION: the history server listens on 0\.0\.0\.0", text)
