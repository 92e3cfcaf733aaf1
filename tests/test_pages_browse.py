"""The browsing pages (sessions, jobs, a session, a job, tasks, a task, actors, nodes, workers, placement
groups) on an archive a real collector made from the real capture: what a person reads, and that every
page is the same data as its JSON twin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .uiserver import CAPTURED_SESSION

SESSION = f"/sessions/default/local/{CAPTURED_SESSION}"
HTML = {"accept": "text/html"}
FAILING_TASK_NAME = "always_fails"


@pytest.fixture(scope="module")
def client(ui_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ui_url, timeout=60) as session:
        yield session


def page(client: httpx.Client, path: str, status: int = 200) -> str:
    answer = client.get(path, headers=HTML)
    assert answer.status_code == status, (path, answer.status_code, answer.text[:500])
    assert answer.headers["content-type"].startswith("text/html")
    return answer.text


def twin(client: httpx.Client, path: str) -> dict:
    answer = client.get("/api/v1" + path)
    assert answer.status_code == 200, answer.text
    return answer.json()


def failed_task(client: httpx.Client) -> dict:
    items = twin(client, f"{SESSION}/tasks?state=FAILED&limit=100")["items"]
    return next(task for task in items if task["name"] == FAILING_TASK_NAME)


PAGES = [
    "/sessions", "/jobs", "/jobs?status=FAILED", SESSION, f"{SESSION}/jobs", f"{SESSION}/jobs/02000000",
    f"{SESSION}/jobs/probe-job-1", f"{SESSION}/tasks", f"{SESSION}/tasks?state=FAILED&sort=-duration_ms",
    f"{SESSION}/actors", f"{SESSION}/nodes", f"{SESSION}/workers", f"{SESSION}/placement_groups",
]  # fmt: skip


@pytest.mark.parametrize("path", PAGES)
def test_every_page_links_its_json_twin_and_is_that_data(client: httpx.Client, path: str) -> None:
    html = page(client, path)
    href = "/api/v1" + path
    assert f'href="{href.replace("&", "&amp;")}"' in html
    data = twin(client, path)
    if "items" in data:  # a list: the page says how many and shows each row's key
        for item in data["items"][:20]:
            key = item.get("session") or item.get("task_id") or item.get("actor_id") or item.get("node_id")
            key = key or item.get("worker_id") or item.get("placement_group_id") or item.get("submission_id")
            assert key is None or key[:12] in html, (path, key)


def test_the_sessions_page_finds_the_session_and_says_why_a_filter_is_wrong(client: httpx.Client) -> None:
    html = page(client, "/sessions")
    assert f'href="{SESSION}"' in html and ">closed<" in html
    row = twin(client, "/sessions")["items"][0]
    assert (row["jobs"], row["failed_jobs"]) == (3, 1)  # probe-job-1 failed; Ray's own driver is not counted
    assert "No session matches" in page(client, "/sessions?status=running")
    bad = page(client, "/sessions?since=yesterday", status=400)
    assert "90m, 24h or 7d" in bad and 'href="/sessions"' in bad
    unknown_sort = page(client, "/sessions?sort=password", status=400)
    assert "invalid sort" in unknown_sort


def test_the_overview_shows_jobs_failures_and_nodes(client: httpx.Client) -> None:
    html = page(client, SESSION)
    assert "probe-job-1" in html and "Job entrypoint command failed with exit code 1" in html
    assert "ValueError: intentional failure from always_fails" in html  # the failure's last line
    assert f'href="{SESSION}/tasks?state=FAILED&amp;func_or_class_name=always_fails"' in html
    assert f'href="/ray/default/local/{CAPTURED_SESSION}/">Open in Ray Dashboard' in html
    summary = twin(client, SESSION)["summary"]
    assert f">{summary['tasks_by_state']['FAILED']}<" in html
    assert summary["nodes"][0]["node_id"][:12] in html


def test_failed_tasks_sorted_by_duration_come_in_that_order(client: httpx.Client) -> None:
    data = twin(client, f"{SESSION}/tasks?state=FAILED&sort=-duration_ms")
    html = page(client, f"{SESSION}/tasks?state=FAILED&sort=-duration_ms")
    assert f"{data['total']} task attempts match" in html
    shown = re.findall(r'href="[^"]*/tasks/([0-9a-f]+)\?attempt=(\d+)"', html)
    assert shown == [(task["task_id"], str(task["attempt_number"])) for task in data["items"]]
    durations = [task["duration_ms"] for task in data["items"] if task["duration_ms"] is not None]
    assert durations == sorted(durations, reverse=True)
    assert 'aria-sort="descending"' in html


def test_a_task_page_has_its_traceback_and_what_it_printed(client: httpx.Client) -> None:
    task = failed_task(client)
    html = page(client, f"{SESSION}/tasks/{task['task_id']}")
    assert "Traceback" in html or "raise ValueError" in html
    assert "ValueError: intentional failure from always_fails" in html
    assert "always_fails: about to raise" in html  # its stderr slice, as the worker printed it
    assert re.search(r'/logs/lines\?node_id=[0-9a-f]+&amp;filename=worker-[^"]+\.err&amp;start_line=\d+#L4"', html)
    for state in ("PENDING_ARGS_AVAIL", "RUNNING", "FAILED"):
        assert state in html


def test_a_retried_task_shows_each_attempt(client: httpx.Client) -> None:
    flaky = next(t for t in twin(client, f"{SESSION}/tasks?func_or_class_name=flaky")["items"])
    data = twin(client, f"{SESSION}/tasks/{flaky['task_id']}?attempt=0")
    assert [a["state"] for a in data["attempts"]] == ["FAILED", "FINISHED"]
    first = page(client, f"{SESSION}/tasks/{flaky['task_id']}?attempt=0")
    assert "RuntimeError: transient failure, should be retried" in first
    last = page(client, f"{SESSION}/tasks/{flaky['task_id']}")
    assert "#0 FAILED" in first and "#1 FINISHED" in last and "RuntimeError" not in last.split("Attempts:")[0]


def test_the_job_page_is_a_stage_page(client: httpx.Client) -> None:
    data = twin(client, f"{SESSION}/jobs/probe-job-2")
    html = page(client, f"{SESSION}/jobs/probe-job-2")
    square = next(f for f in data["functions"] if f["func_or_class_name"] == "square")
    assert square["duration_ms_min"] <= square["duration_ms_p25"] <= square["duration_ms_p50"]
    assert (
        square["duration_ms_p50"] <= square["duration_ms_p75"] <= square["duration_ms_p95"] <= square["duration_ms_max"]
    )
    for label in ("min", "p25", "p50", "p75", "p95", "max"):
        assert f">{label}<" in html
    assert f"Failed tasks ({data['failed_tasks']['total']})" in html and data["failed_tasks"]["total"] == 6
    assert "probe_counter" in html  # the named actor
    assert data["driver_log"]["filename"] == "job-driver-probe-job-2.log"
    assert "filename=job-driver-probe-job-2.log&amp;tail=200" in html
    never_ran = twin(client, f"{SESSION}/jobs/probe-job-1")
    assert never_ran["status"] == "FAILED" and never_ran["functions"] == []


def test_jobs_across_sessions_filter_by_status(client: httpx.Client) -> None:
    html = page(client, "/jobs?status=FAILED")
    assert "probe-job-1" in html and "probe-job-2" not in html
    assert f'href="{SESSION}/jobs/probe-job-1"' in html
    assert "No job matches" in page(client, "/jobs?queue=nobody")


def test_an_actor_page_has_its_calls_death_and_output(client: httpx.Client) -> None:
    actors = twin(client, f"{SESSION}/actors?class_name=Counter")["items"]
    counter = actors[0]
    html = page(client, f"{SESSION}/actors/{counter['actor_id']}")
    assert "probe_counter" in html and "killed by `ray.kill`" in html
    assert "Counter.incr" in html or "incr" in html
    assert 'data-stream="stdout"' in html or "holds no stdout" in html


def test_unknown_things_answer_a_404_page_and_the_api_json(client: httpx.Client) -> None:
    html = page(client, f"{SESSION}/tasks/{'ab' * 24}", status=404)
    assert "no task" in html and f'href="{SESSION}"' in html
    assert page(client, "/sessions/default/local/session_nope", status=404)
    api = client.get(f"/api/v1{SESSION}/tasks/{'ab' * 24}")
    assert api.status_code == 404 and api.json() == {"error": f"no task {'ab' * 24} in this session"}


def test_a_bad_sort_says_which_columns_can_be_sorted(client: httpx.Client) -> None:
    html = page(client, f"{SESSION}/tasks?sort=secret", status=400)
    assert "sort by one of" in html and "duration_ms" in html


def test_a_refused_filter_keeps_the_page_usable(client: httpx.Client) -> None:
    """The reason above the same page, its filters still there with what was typed, to mend it."""
    html = page(client, "/jobs?status=FAILED&since=a+while", status=400)
    assert 'role="alert"' in html and "90m, 24h or 7d" in html
    assert '<form class="filters"' in html and "<option selected>FAILED</option>" in html
    assert "No job matches" in html


def test_pages_escape_what_they_show(client: httpx.Client) -> None:
    html = page(client, "/jobs?entrypoint=<script>alert(1)</script>")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_templates_and_assets_ship_in_the_package() -> None:
    import ui

    assert (Path(ui.TEMPLATES) / "base.html").exists() and (Path(ui.STATIC) / "app.css").exists()
    text = "".join(path.read_text() for path in Path(ui.TEMPLATES).glob("*.html"))
    assets = "".join(path.read_text() for path in Path(ui.STATIC).glob("*.*") if path.suffix in (".js", ".css"))
    assert not re.search(r"(src|href)=\"(https?:)?//", text), "a template refers to another host"
    assert not re.search(r"https?://(?!www\.w3\.org)", assets), "an asset refers to another host"
