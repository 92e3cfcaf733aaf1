"""Ray 2.60's own dashboard, in Chromium, on the captured (dead) session: every page a user opens renders
its real content with no failed request and no console error (the `page` fixture fails on those), and
the answers those pages need beyond the state API have Ray's shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from historyserver.rayapi import libraries

from .conftest import fixture_bytes
from .uiserver import CAPTURED_NODE, CAPTURED_SESSION, shoot

PREFIX = f"/ray/default/local/{CAPTURED_SESSION}"
SQUARE_TASK = "e5cbd90b7f1fb776ffffffffffffffffffffffff02000000"
TIMEOUT_MS = 30_000


@pytest.fixture
def failed(page: Any) -> Iterator[list[str]]:
    """Every response of the page with a status of 400 or more; none may be left at the end."""
    found: list[str] = []
    page.on("response", lambda response: found.append(f"{response.status} {response.url}")
            if response.status >= 400 else None)  # fmt: skip
    yield found
    assert found == [], f"failed requests: {found}"


def open_page(page: Any, ui_url: str, route: str) -> None:
    page.goto(f"{ui_url}{PREFIX}/#/{route}")


def see(page: Any, text: str) -> None:
    page.get_by_text(text).first.wait_for(timeout=TIMEOUT_MS)


def settle(page: Any, name: str) -> None:
    """Let the page's polls answer (Ray's UI refreshes every few seconds), then keep a screenshot."""
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(1500)
    shoot(page, f"ray-dashboard-{name}")


def test_overview(page: Any, failed: list[str], ui_url: str) -> None:
    open_page(page, ui_url, "overview")
    see(page, "probe-job-2")
    settle(page, "overview")


def test_jobs_and_a_jobs_page_with_its_driver_log(page: Any, failed: list[str], ui_url: str) -> None:
    open_page(page, ui_url, "jobs")
    see(page, "probe-job-2")
    settle(page, "jobs")
    open_page(page, ui_url, "jobs/02000000")
    see(page, "JOB_DRIVER: starting workload")  # the driver log, read through api/v0/logs/file
    see(page, "Task Timeline")
    settle(page, "job")


def test_a_tasks_page_shows_what_it_printed(page: Any, failed: list[str], ui_url: str) -> None:
    open_page(page, ui_url, f"jobs/02000000/tasks/{SQUARE_TASK}")
    see(page, "NORMAL_TASK")
    page.get_by_role("tab", name="stdout").click()  # Ray opens the (empty) stderr tab first
    see(page, "running on pid 6355")
    settle(page, "task")


def test_cluster_says_the_node_is_dead(page: Any, failed: list[str], ui_url: str) -> None:
    open_page(page, ui_url, "cluster")
    see(page, "192.0.2.2")
    assert page.get_by_text("DEAD", exact=True).count() >= 1
    assert page.get_by_text("ALIVE", exact=True).count() == 0
    settle(page, "cluster")


def test_actors_and_an_actors_output(page: Any, failed: list[str], ui_url: str) -> None:
    open_page(page, ui_url, "actors")
    see(page, "Counter")
    settle(page, "actors")
    open_page(page, ui_url, "actors/cf86f9f800d79224ccbfe34102000000")
    see(page, "probe_counter")
    settle(page, "actor")


def test_a_dead_nodes_logs_are_reached_from_its_page(page: Any, failed: list[str], ui_url: str) -> None:
    open_page(page, ui_url, "logs")
    see(page, "Select a node to view logs")  # no node is alive: Ray's list of nodes is empty
    open_page(page, ui_url, f"cluster/nodes/{CAPTURED_NODE}")
    page.get_by_role("link", name="log", exact=True).click()
    see(page, f"Node: {CAPTURED_NODE}")
    page.get_by_role("link", name="raylet.err", exact=True).click()
    see(page, "raylet")  # the viewer opened the file
    text = (fixture_bytes("logs", "run1", "raylet.err").decode().splitlines() or [""])[0][:40]
    see(page, text)
    settle(page, "logs")


@pytest.fixture(scope="module")
def client(ui_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ui_url + PREFIX, timeout=60) as session:
        yield session


def test_serve_without_an_archived_status_is_a_cluster_without_serve(client: httpx.Client) -> None:
    assert client.get("/api/serve/applications/").json() == libraries.NO_SERVE


def test_profiling_is_off(client: httpx.Client) -> None:
    answer = client.get("/api/profiling_enabled").json()
    assert answer["result"] is True and answer["data"]["profilingEnabled"] is False
    assert answer["data"]["profilingDefaults"]["cpuDuration"] == 5


def test_datasets_have_rays_shape(client: httpx.Client) -> None:
    live = json.loads(fixture_bytes("dashboard_api", "api_data_datasets_02000000.json"))
    assert client.get("/api/data/datasets/02000000").json() == {"datasets": []}  # none archived in this capture
    record = {"dataset_id": "dataset_1", "job_id": "02000000", "state": "FINISHED", "start_time": 1.0,
              "execution_end_time": 2.0, "topology": {"operators": [{"id": "Input_0", "name": "Input",
                                                                      "state": "FINISHED"}]}}  # fmt: skip
    ours = libraries.dataset(record)
    [theirs] = live["datasets"]
    assert ours.keys() == theirs.keys() and ours["operators"][0].keys() == theirs["operators"][0].keys()
    assert (ours["dataset"], ours["state"], ours["end_time"]) == ("dataset_1", "FINISHED", 2.0)


def test_the_task_timeline_and_its_download(client: httpx.Client) -> None:
    spans = client.get("/api/v0/tasks/timeline", params={"job_id": "02000000"}).json()
    assert spans and all(span["ph"] == "X" and span["args"]["job_id"] == "02000000" for span in spans)
    download = client.get("/api/v0/tasks/timeline", params={"job_id": "02000000", "download": "1"})
    assert download.headers["content-disposition"].startswith('attachment; filename="timeline-02000000-')
