"""A person's morning, in Chromium: land on /, find the session, open its failed tasks, open one, read its
traceback and what it printed, search the logs, open the timeline and a metric chart, run a SQL query.

Run on the archive a real collector made from the real capture, and on the real-Ray end-to-end session.
No page may ask another host for anything or log an error (the `page` fixture checks). Screenshots of
the main pages go to RAY_HISTORY_SCREENSHOTS when it is set (the README's come from here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .uiserver import CAPTURED_SESSION, Watch, served, shoot


@dataclass(frozen=True)
class Story:
    session: str  # the session's name, as the sessions page lists it
    failing_task: str  # the name of a task that failed
    traceback: str  # a line of its traceback
    printed: str | None  # something it printed (None: the workload's failing task prints nothing)
    log_pattern: str  # a regex that finds a line in the session's logs
    metric: str  # a metric the session archived


def walk(page: Any, url: str, story: Story, screenshots: bool = False) -> None:
    """Every step as a person takes it: by clicking what the pages show, not by typing addresses."""
    page.goto(url + "/")
    assert page.url.endswith("/sessions")
    page.get_by_role("link", name=story.session, exact=True).click()
    page.wait_for_load_state()
    session_path = page.url.split("?")[0].removeprefix(url)
    assert session_path.endswith(story.session)
    if screenshots:
        shoot(page, "session")

    page.locator(f'a[href="{session_path}/tasks?state=FAILED"]').first.click()
    assert page.url.endswith("/tasks?state=FAILED")
    rows = page.locator("table tbody tr")
    assert rows.count() >= 1 and "FAILED" in rows.first.inner_text()
    if screenshots:
        shoot(page, "failed-tasks")

    page.get_by_role("link", name=story.failing_task, exact=True).first.click()
    page.wait_for_load_state()
    assert re.search(r"/tasks/[0-9a-f]+\?attempt=\d+$", page.url)
    assert story.traceback in page.locator("pre#error").inner_text()
    if story.printed is not None:
        assert story.printed in "".join(page.locator("pre[data-stream]").all_inner_texts())
    assert page.get_by_role("heading", name="What it printed").is_visible()
    if screenshots:
        shoot(page, "task")

    page.get_by_role("link", name="Logs", exact=True).first.click()
    page.locator('input[name="pattern"]').fill(story.log_pattern)
    page.locator('input[name="pattern"]').press("Enter")
    page.wait_for_load_state()
    assert "/logs/search?" in page.url
    hit = page.locator('a[href*="/logs/lines?"][href*="#L"]').first
    line = hit.get_attribute("href").rsplit("#L", 1)[1]
    hit.click()
    page.wait_for_load_state()
    target = page.locator(f'[id="L{line}"]')
    assert re.search(story.log_pattern, target.inner_text())
    if screenshots:
        shoot(page, "log-search-hit")

    page.get_by_role("link", name="Timeline", exact=True).first.click()
    page.wait_for_function("Number(document.querySelector('#gantt')?.dataset.drawn || 0) > 0", timeout=30_000)
    if screenshots:
        shoot(page, "timeline")

    page.get_by_role("link", name="Metrics", exact=True).first.click()
    page.get_by_role("link", name=story.metric, exact=True).first.click()
    page.wait_for_selector("#chart-svg path", state="attached", timeout=30_000)  # one scrape: a single point
    assert page.locator("#chart-svg path").count() >= 1
    if screenshots:
        shoot(page, "metric")

    page.get_by_role("link", name="SQL", exact=True).last.click()
    query = page.locator("textarea#sql-query")
    query.fill("SELECT state, count(*) AS attempts FROM tasks GROUP BY state ORDER BY attempts DESC")
    query.press("Control+Enter")
    page.wait_for_selector("table.result tbody tr")
    assert "FAILED" in page.locator("table.result").inner_text()
    assert "q=SELECT" in page.url  # the query is in the address, to paste to a colleague
    if screenshots:
        shoot(page, "sql")


CAPTURED = Story(
    session=CAPTURED_SESSION, failing_task="always_fails",
    traceback="ValueError: intentional failure from always_fails", printed="always_fails: about to raise",
    log_pattern="retry attempt", metric="ray_node_cpu_utilization",
)  # fmt: skip


def test_a_morning_on_the_captured_session(page: Any, ui_url: str) -> None:
    walk(page, ui_url, CAPTURED, screenshots=True)


@pytest.mark.ray
def test_a_morning_on_the_real_ray_session(ray_run, browser, tmp_path: Path) -> None:
    story = Story(
        session=ray_run.session_name, failing_task="boom", traceback="ValueError: this task fails on purpose",
        printed=None, log_pattern=r"square\(\d+\) = \d+", metric="ray_node_cpu_utilization",
    )  # fmt: skip
    with served(ray_run.storage, tmp_path / "cache", refresh_interval=3600) as url:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        watch = Watch(url)
        watch.attach(page)
        try:
            walk(page, url, story)
        finally:
            context.close()
        watch.assert_clean()
