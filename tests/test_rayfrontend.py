"""Ray's own dashboard frontend, served for a dead session under its prefix, from the installed Ray."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from historyserver import rayfrontend

from .uiserver import CAPTURED_SESSION

PREFIX = f"/ray/default/local/{CAPTURED_SESSION}"


@pytest.fixture(scope="module")
def client(ui_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ui_url, timeout=60) as session:
        yield session


def test_the_prefix_serves_rays_own_dashboard_with_relative_assets(client: httpx.Client) -> None:
    assert rayfrontend.build_dir() is not None, "the tests install Ray: its dashboard build must be found"
    redirect = client.get(PREFIX)
    assert redirect.status_code == 307 and redirect.headers["location"] == PREFIX + "/"
    index = client.get(PREFIX + "/")
    assert index.status_code == 200 and "<title>Ray Dashboard</title>" in index.text
    scripts = [part.split('"')[0] for part in index.text.split('src="')[1:]]
    assert scripts and all(src.startswith("./static/") for src in scripts)
    script = client.get(PREFIX + "/" + scripts[0].removeprefix("./"))
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "immutable" in script.headers["cache-control"]


def test_nothing_outside_the_build_and_no_unknown_session(client: httpx.Client) -> None:
    for hostile in ("..%2F..%2F..%2Fetc%2Fpasswd", "static/..%2F..%2F__init__.py", "%2Fetc%2Fpasswd"):
        assert client.get(f"{PREFIX}/{hostile}").status_code == 404
    assert client.get("/ray/default/local/session_unknown/").status_code == 404
    assert client.get("/ray/default/local/a b/").status_code == 400


def test_without_ray_the_prefix_says_how_to_get_it(client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rayfrontend, "build_dir", lambda: None)
    page = client.get(PREFIX + "/")
    assert page.status_code == 501
    assert (
        "pip install 'ray-history[ray]'" in page.text
        and f'href="/sessions/default/local/{CAPTURED_SESSION}"' in page.text
    )
