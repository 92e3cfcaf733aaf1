from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

# Real Ray 2.60 captures (see its README); the large ones are gzipped, and fixture_bytes reads either.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ray-2.60"


def fixture_path(*parts: str) -> Path:
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"Ray 2.60 fixture missing: {path} (tests/fixtures/ray-2.60 in the repository)")
    return path


def fixture_bytes(*parts: str) -> bytes:
    """A capture's bytes, whether it is kept as it is or gzipped (`name.gz`)."""
    path = FIXTURES.joinpath(*parts)
    if path.exists():
        return path.read_bytes()
    return gzip.decompress(fixture_path(*parts[:-1], parts[-1] + ".gz").read_bytes())


def fixture_posts(name: str = "run1_all_posts_camelCase.jsonl") -> list[list[dict[str, Any]]]:
    """Every POST body the aggregator agent sent in a real capture."""
    lines = fixture_bytes("ray_events_http", name).decode().splitlines()
    return [json.loads(line)["events"] for line in lines if line.strip()]


@pytest.fixture
def camel_posts() -> list[list[dict[str, Any]]]:
    return fixture_posts()


@pytest.fixture
def snake_posts() -> list[list[dict[str, Any]]]:
    return fixture_posts("run5_all_posts_snake_case.jsonl")


@pytest.fixture(scope="session")
def ray_run():
    """The one real Ray run of this test session (Ray is too heavy to start twice on 2 cores)."""
    from .raycluster import ray_run as start_ray_run

    with start_ray_run() as run:
        yield run


CAPTURED_SESSION = "session_2026-11-28_19-03-57_108652_5250"
CAPTURED_NODE = "50dae9eb11ba41e336fa66cb35aa1a3832f70b5b1c80e9d237bec012"


@pytest.fixture
def session_dir(tmp_path: Path) -> Path:
    """A Ray temp dir (tmp_path/ray) with the captured session in it, laid out as Ray lays it out."""
    session = tmp_path / "ray" / CAPTURED_SESSION
    (session / "logs").mkdir(parents=True)
    (tmp_path / "ray" / "session_latest").symlink_to(session)
    (session / f"raylet_port_{CAPTURED_NODE}").write_text("1234")
    return session


@pytest.fixture(scope="session")
def captured_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive a real collector made from the real capture, shared by the page tests (read-only)."""
    from .uiserver import captured_archive as build

    return build(tmp_path_factory.mktemp("captured"))


@pytest.fixture(scope="session")
def ui_url(captured_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real history server over the captured archive, on a port of its own."""
    from .uiserver import served

    with served(captured_archive, tmp_path_factory.mktemp("ui-cache"), refresh_interval=3600) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    from .uiserver import chromium

    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser, ui_url: str):
    """A fresh browser page on the history server; it fails the test if the page asked another host for
    anything or logged an error."""
    from .uiserver import Watch

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    watch = Watch(ui_url)
    watch.attach(opened)
    yield opened
    context.close()
    watch.assert_clean()


def live_answer(name: str) -> dict[str, Any] | list[Any]:
    """What Ray 2.60's live dashboard answered (dashboard_api/ of the capture)."""
    return json.loads(fixture_bytes("dashboard_api", name).decode())


@pytest.fixture(scope="session")
def client(captured_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    """FastAPI's in-process client of a history server over the captured archive (a module may have its own)."""
    from fastapi.testclient import TestClient

    from archive.storage import open_storage
    from historyserver.app import create_app
    from historyserver.server import HistoryServer, ServerSettings

    settings = ServerSettings(cache_dir=tmp_path_factory.mktemp("captured-cache"), refresh_interval=3600)
    with TestClient(create_app(HistoryServer(open_storage(str(captured_archive)), settings))) as client:
        yield client
