"""Comparing two sessions: the same synthetic workload run twice, the second time with failures 14 times
as likely, beside the real capture. Deltas are checked against each session's own figures read another
way (the tasks summary endpoint and plain SQL), the page's highlighting against the deltas, and the
page in Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import bench.archive_synth as synth
from archive import layout
from archive.storage import open_storage
from historyserver.app import create_app
from historyserver.server import HistoryServer, ServerSettings

from .uiserver import CAPTURED_SESSION, captured_archive, served

RUN_A = layout.SessionRef("team", "nightly-abc12", "session_2026-11-27_10-00-00_000000_1")
RUN_B = layout.SessionRef("team", "nightly-abc12", "session_2026-11-28_10-00-00_000000_1")
A, B = RUN_A.path, RUN_B.path
CAPTURED = f"default/local/{CAPTURED_SESSION}"
# The synthetic RayJob's own submission (the same seed names it the same in both runs) and its job id.
SUBMISSION, JOB_ID = "nightly-qpjpr", "02000000"


def two_runs_archive(root: Path) -> Path:
    """The real capture's archive, plus two runs of one synthetic RayJob: same seed, so the same tasks
    and functions, but B's attempts raise 14 times as often as A's."""
    archive = captured_archive(root)
    storage = open_storage(str(archive))
    synth.write_session(storage, RUN_A, 600, seed=3, nodes=2, start_ms=1_795_800_000_000, duration_s=120)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synth, "BASE_EXCEPTION_RATE", 0.15)
        synth.write_session(storage, RUN_B, 600, seed=3, nodes=2, start_ms=1_795_890_000_000, duration_s=120)
    return archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_runs_archive(tmp_path_factory.mktemp("compare"))


@pytest.fixture(scope="module")
def client(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = ServerSettings(cache_dir=tmp_path_factory.mktemp("cache"), refresh_interval=3600)
    with TestClient(create_app(HistoryServer(open_storage(str(archive)), settings))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def ui_url(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This module's browser tests see the two runs: the `page` fixture browses this server."""
    with served(archive, tmp_path_factory.mktemp("ui-cache"), refresh_interval=3600) as url:
        yield url


def summary(client: TestClient, path: str, job_id: str | None) -> dict[str, dict[str, Any]]:
    """A session's figures per function from its tasks summary endpoint."""
    params = {"job_id": job_id} if job_id else {}
    items = client.get(f"/api/v1/sessions/{path}/tasks/summary", params=params).json()["items"]
    return {row["func_or_class_name"]: row for row in items}


def failed_by_sql(client: TestClient, path: str, job_id: str) -> dict[str, int]:
    """Failed attempts per function counted by plain SQL, not by the summary the comparison reads."""
    sql = f"""SELECT func_or_class_name, count(*) AS failed FROM tasks
              WHERE job_id = '{job_id}' AND state = 'FAILED' AND type != 'DRIVER_TASK' GROUP BY ALL"""
    answer = client.get("/api/v1/sql", params={"q": sql, "session": path}).json()
    return {name: failed for name, failed in answer["rows"]}


def test_deltas_are_b_minus_a_for_every_function_of_the_job(client: TestClient) -> None:
    answer = client.get("/api/v1/compare", params={"a": A, "b": B, "job": SUBMISSION})
    assert answer.status_code == 200
    data = answer.json()
    assert data["a"]["job"]["job_id"] == data["b"]["job"]["job_id"] == JOB_ID
    assert data["a"]["job"]["submission_id"] == SUBMISSION
    side_a, side_b = summary(client, A, JOB_ID), summary(client, B, JOB_ID)
    assert {row["func_or_class_name"] for row in data["functions"]} == side_a.keys() | side_b.keys()
    for row in data["functions"]:
        name = row["func_or_class_name"]
        before, after = side_a.get(name), side_b.get(name)
        for key in ("attempts", "finished", "failed"):
            assert row["delta"][key] == (after or {}).get(key, 0) - (before or {}).get(key, 0), (name, key)
        if before and after:
            for key in ("duration_ms_p50", "duration_ms_p95", "duration_ms_max"):
                if before[key] is None or after[key] is None:
                    continue
                assert row["delta"][key] == pytest.approx(after[key] - before[key], abs=1e-3), (name, key)
                if before[key]:
                    assert row["ratio"][key] == pytest.approx(after[key] / before[key], abs=1e-3), (name, key)


def test_more_failures_in_b_are_marked_worse_and_counted_the_way_sql_counts_them(client: TestClient) -> None:
    data = client.get("/api/v1/compare", params={"a": A, "b": B, "job": SUBMISSION}).json()
    failed_a, failed_b = failed_by_sql(client, A, JOB_ID), failed_by_sql(client, B, JOB_ID)
    assert sum(failed_b.values()) > 3 * sum(failed_a.values()) > 0
    assert data["b"]["totals"]["failed"] == sum(failed_b.values())
    assert data["a"]["totals"]["failed"] == sum(failed_a.values())
    assert data["totals_delta"]["failed"] == sum(failed_b.values()) - sum(failed_a.values())
    for row in data["functions"]:
        name = row["func_or_class_name"]
        delta = failed_b.get(name, 0) - failed_a.get(name, 0)
        assert row["delta"]["failed"] == delta
        assert row["change"].get("failed") == ("worse" if delta > 0 else "better" if delta < 0 else None)
    assert data["functions_worse"] >= sum(1 for name in failed_b if failed_b[name] > failed_a.get(name, 0))


def test_a_session_against_itself_changes_nothing(client: TestClient) -> None:
    data = client.get("/api/v1/compare", params={"a": A, "b": A}).json()
    assert data["functions"] and data["functions_worse"] == data["functions_better"] == 0
    for row in data["functions"]:
        assert row["presence"] == "both" and row["change"] == {}
        assert all(value in (0, None) for value in row["delta"].values())


def test_functions_of_one_side_only_are_aligned_against_nothing(client: TestClient) -> None:
    data = client.get("/api/v1/compare", params={"a": CAPTURED, "b": A}).json()
    rows = {row["func_or_class_name"]: row for row in data["functions"]}
    flaky = rows["flaky"]  # only the capture ran it
    assert flaky["presence"] == "only_a" and flaky["b"] is None
    assert flaky["delta"]["attempts"] == -flaky["a"]["attempts"]
    assert flaky["delta"]["duration_ms_p50"] is None
    assert rows["allreduce_grads"]["presence"] == "only_b"
    # Both sessions ran Ray Data's map tasks: one row, not two.
    assert rows["_map_task"]["presence"] == "both"
    assert [job["submission_id"] for job in data["a"]["jobs"] if job["submission_id"]] == ["probe-job-1", "probe-job-2"]


def test_the_job_may_be_named_differently_in_b(client: TestClient) -> None:
    data = client.get("/api/v1/compare", params={"a": A, "b": B, "job": SUBMISSION, "job_b": JOB_ID}).json()
    assert data["b"]["job"]["submission_id"] == SUBMISSION
    # A submission whose driver never started ran no task: nothing to compare, not the whole session.
    failed_submission = next(job for job in data["a"]["jobs"] if job["job_id"] is None)
    empty = client.get("/api/v1/compare", params={"a": A, "b": B, "job": failed_submission["submission_id"]})
    assert empty.status_code == 200 and empty.json()["functions"] == []


@pytest.mark.parametrize(("params", "status", "says"), [
    ({"a": A, "b": "team/nightly-abc12"}, 400, "B must be namespace/cluster/session"),
    ({"a": "team/nightly-abc12/session_1999-01-01_00-00-00_000000_1", "b": B}, 404, "no session"),
    ({"a": A, "b": B, "job": "no-such-job"}, 404, "nightly-qpjpr"),
])  # fmt: skip
def test_what_cannot_be_compared_says_why(client: TestClient, params: dict[str, str], status: int, says: str) -> None:
    answer = client.get("/api/v1/compare", params=params)
    assert answer.status_code == status and says in answer.json()["error"]
    page = client.get("/compare", params=params, headers={"accept": "text/html"})
    assert page.status_code == status and says in page.text


def test_without_two_sessions_the_page_offers_recent_ones(client: TestClient) -> None:
    data = client.get("/api/v1/compare").json()
    assert data["a"] is None and data["functions"] == []
    assert {row["path"] for row in data["sessions"]} == {A, B, CAPTURED}
    html = client.get("/compare", params={"a": A}).text
    assert f'<option value="{B}"' in html and f'<option value="{A}" selected' in html
    assert "Pick two sessions" in html


class CompareTable(HTMLParser):
    """The compare table's body rows: the function's name and each cell's (class, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[tuple[str, str]]] = {}
        self._in_table = self._in_body = False
        self._row: list[tuple[str, str]] | None = None
        self._name = ""
        self._cell: list[str] | None = None
        self._class = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table" and "compare" in (attributes.get("class") or ""):
            self._in_table = True
        elif self._in_table and tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self._row, self._name = [], ""
        elif self._row is not None and tag in ("td", "th"):
            self._cell, self._class = [], attributes.get("class") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = self._in_table = False
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            text = " ".join("".join(self._cell).split())
            if tag == "th":
                self._name = text.split(" ")[0]
            else:
                self._row.append((self._class, text))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows[self._name] = self._row
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_the_page_highlights_worse_in_red_and_better_in_green(client: TestClient) -> None:
    params = {"a": A, "b": B, "job": SUBMISSION}
    data = client.get("/api/v1/compare", params=params).json()
    page = client.get("/compare", params=params)
    assert page.status_code == 200
    table = CompareTable()
    table.feed(page.text)
    assert set(table.rows) == {row["func_or_class_name"] for row in data["functions"]}
    checked = {"worse": 0, "better": 0}
    for row in data["functions"]:
        cells = table.rows[row["func_or_class_name"]]
        # Cells: attempts, finished, failed, p50, p95, max; each A, B, delta.
        for index, key in enumerate(("attempts", "finished", "failed", "duration_ms_p50", "duration_ms_p95",
                                     "duration_ms_max")):  # fmt: skip
            css, text = cells[3 * index + 2]
            change = row["change"].get(key)
            assert ("delta-up" in css) == (change == "worse"), (row["func_or_class_name"], key, css)
            assert ("delta-down" in css) == (change == "better"), (row["func_or_class_name"], key, css)
            if change:
                checked[change] += 1
            if key == "failed" and row["delta"]["failed"]:
                sign = "+" if row["delta"]["failed"] > 0 else "\N{MINUS SIGN}"  # as the page prints it
                assert text == f"{sign}{abs(row['delta']['failed'])}"
    assert checked["worse"] > 0 and checked["better"] > 0
    # Each side's jobs, with their status, and the job compared named on both cards.
    assert page.text.count(SUBMISSION) >= 4 and "SUCCEEDED" in page.text and "FAILED" in page.text


def test_the_compare_page_in_a_browser(page: Any, ui_url: str) -> None:
    page.goto(f"{ui_url}/compare")
    page.select_option("select[name=a]", A)
    page.select_option("select[name=b]", B)
    page.fill("input[name=job]", SUBMISSION)
    page.click("form.compare-pick button[type=submit]")
    page.wait_for_selector("table.compare tbody tr")
    assert "a=" in page.url and "job=nightly-qpjpr" in page.url
    assert page.locator("table.compare tbody tr").count() > 10
    assert page.locator("table.compare td.delta-up").count() > 0
    red = page.locator("table.compare td.delta-up").first.evaluate("cell => getComputedStyle(cell).color")
    green = page.locator("table.compare td.delta-down").first.evaluate("cell => getComputedStyle(cell).color")
    assert red != green
    page.screenshot(path="/tmp/compare-page.png", full_page=True)
    # Swapping turns every regression into an improvement.
    page.click("text=swap A and B")
    page.wait_for_selector("table.compare tbody tr")
    assert f"a={B.replace('/', '%2F')}" in page.url
