"""Ray's own dashboard, in Chromium, on the real-Ray end-to-end session after its cluster is gone: each page
renders its content (overview, jobs, a job, a task, actors, cluster, a dead node's logs) with no failed
request, no console error and no request to another host."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .raycluster import SUBMISSION_ID
from .uiserver import Watch, served

pytestmark = pytest.mark.ray
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def prefix(ray_run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with served(ray_run.storage, tmp_path_factory.mktemp("rayui-cache"), refresh_interval=3600) as url:
        yield url, f"{url}/ray/tests/e2e/{ray_run.session_name}"


def test_rays_dashboard_renders_the_dead_session(ray_run, browser, prefix: tuple[str, str]) -> None:
    url, base = prefix
    job_id = next(job["job_id"] for job in ray_run.state["jobs"] if job.get("submission_id") == SUBMISSION_ID)
    square = next(t for t in ray_run.state["tasks"] if t["job_id"] == job_id and t["func_or_class_name"] == "square")
    node_id = ray_run.state["nodes"][0]["node_id"]
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    watch = Watch(url)
    watch.attach(page)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    def visit(route: str, text: str) -> Any:
        page.goto(f"{base}/#/{route}")
        page.get_by_text(text).first.wait_for(timeout=TIMEOUT_MS)
        page.wait_for_load_state("networkidle")
        return page

    try:
        visit("overview", SUBMISSION_ID)
        visit("jobs", SUBMISSION_ID)
        visit(f"jobs/{job_id}", "Task Timeline")
        visit(f"jobs/{job_id}/tasks/{square['task_id']}", "NORMAL_TASK")
        visit("actors", "Counter")
        cluster = visit("cluster", "DEAD")
        assert cluster.get_by_text("ALIVE", exact=True).count() == 0
        # A dead node's logs: from its page, as Ray's Logs page lists live nodes only.
        node = visit(f"cluster/nodes/{node_id}", node_id[:8])
        node.get_by_role("link", name="log", exact=True).click()
        node.get_by_text(f"Node: {node_id}").first.wait_for(timeout=TIMEOUT_MS)
        node.get_by_role("link", name="raylet.out", exact=True).click()
        node.get_by_text("raylet").first.wait_for(timeout=TIMEOUT_MS)
        node.wait_for_load_state("networkidle")
    finally:
        context.close()
    assert failed == [], f"failed requests: {failed}"
    watch.assert_clean()


def test_the_session_page_links_rays_dashboard(ray_run, prefix: tuple[str, str]) -> None:
    url, base = prefix
    html = httpx.get(f"{url}/sessions/tests/e2e/{ray_run.session_name}", headers={"accept": "text/html"}).text
    assert f'href="{base.removeprefix(url)}/">Open in Ray Dashboard' in html
