"""An archive a real collector made from the real Ray 2.60 capture, a real history server serving it on
a port, and Debian's Chromium driven by Playwright: what the page tests browse as a person would."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from archive.storage import Storage, open_storage
from collector.config import PollSettings
from historyserver.app import create_app
from historyserver.login import AccessSettings
from historyserver.server import HistoryServer, ServerSettings
from ray_history.localray import free_port, wait_healthy

from .collectors import collector_thread
from .conftest import FIXTURES, fixture_bytes, fixture_path, fixture_posts

CAPTURED_SESSION = "session_2026-11-28_19-03-57_108652_5250"
CAPTURED_NODE = "50dae9eb11ba41e336fa66cb35aa1a3832f70b5b1c80e9d237bec012"
CHROMIUM = "/usr/bin/chromium"
# As the workplace's probe runs it: no sandbox as root, and no background traffic to any other host.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip


def captured_archive(root: Path) -> Path:
    """The capture's POSTs sent to a collector that also tails its export file, ships its logs, scrapes
    its metrics and polls a dashboard answering what the live one answered; then stopped."""
    from .test_polling import http_server

    session = root / "ray" / CAPTURED_SESSION
    shutil.copytree(FIXTURES / "logs" / "run1", session / "logs")
    (session / "logs" / "export_events").mkdir()
    shutil.copy(
        fixture_path("export_api_files", "run1_with_enable_ray_event", "event_EXPORT_SUBMISSION_JOB.log"),
        session / "logs" / "export_events" / "event_EXPORT_SUBMISSION_JOB.log",
    )
    (session / "logs" / "events").mkdir()
    for name in ("event_JOBS.log", "event_RAYLET.log"):  # Ray's legacy events, tailed as LEGACY_EVENT rows
        shutil.copy(fixture_path("legacy_events", "run1", name), session / "logs" / "events" / name)
    (root / "ray" / "session_latest").symlink_to(session)
    (session / f"gcs_server_port_{CAPTURED_NODE}").write_text("6379")
    answers = {
        "/api/v0/placement_groups?detail=1&limit=10000": fixture_bytes(
            "dashboard_api", "api_v0_placement_groups_detail_1.json"
        ),
        "/api/jobs/": fixture_bytes("dashboard_api", "api_jobs_.json"),
        "/metrics": fixture_bytes("metrics", "run1_scrape_8080_trimmed.txt"),
    }
    with http_server(answers) as dashboard:
        # The node's metrics port is the same little server: the collector scrapes it once at start.
        (session / f"metrics_export_port_{CAPTURED_NODE}").write_text(dashboard.rsplit(":", 1)[1])
        polling = PollSettings(dashboard_url=f"http://{dashboard}", metrics_interval=3600, dashboard_interval=3600)
        with collector_thread(root, ray_temp_dir=root / "ray", polling=polling) as collector:
            for post in fixture_posts():
                assert httpx.post(f"{collector.url}/v1/events", json=post).status_code == 200
    return root / "archive"


@contextmanager
def served(archive: Path | str | Storage, cache_dir: Path, access: AccessSettings | None = None,
           **settings: Any) -> Iterator[str]:  # fmt: skip
    """`ray-history serve` in a thread on a free port: the base URL, until the block ends. With `access`, who
    may see what (and, as `ray-history serve` does then, the connection's own address only)."""
    storage = archive if not isinstance(archive, Path | str) else open_storage(str(archive))
    history = HistoryServer(storage, ServerSettings(cache_dir=cache_dir, **settings))
    port = free_port()
    config = uvicorn.Config(create_app(history, access), host="127.0.0.1", port=port, log_level="warning",
                            proxy_headers=access is None)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class Watch:
    """What a page did that a user must never see: requests to another host, console errors, page errors."""

    base: str
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("request", lambda request: None if request.url.startswith((self.base, "data:", "blob:"))
                else self.outside.append(request.url))  # fmt: skip
        page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def assert_clean(self) -> None:
        assert self.outside == [], f"requests outside the server: {self.outside}"
        assert self.errors == [], f"errors in the browser: {self.errors}"


def shoot(page: Any, name: str) -> None:
    """A screenshot for the README, when RAY_HISTORY_SCREENSHOTS names a folder (docs/screenshots)."""
    folder = os.environ.get("RAY_HISTORY_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=False)


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium under Playwright, launched by its path (no browser is ever downloaded)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
