"""The SQL console: GET /sql?q=... runs the query and shows its rows (the URL is the page's whole state),
its JSON twin and CSV download answer the same rows, a bad query keeps its text beside the reason, and a
session's console sees that session only. Over the real capture plus two synthetic sessions."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from archive.storage import open_storage
from historyserver.app import create_app
from historyserver.server import HistoryServer, ServerSettings
from historyserver.views.sql import EXAMPLES, PAGE_ROWS

from .test_pages_compare import CAPTURED, A, B, two_runs_archive
from .uiserver import CAPTURED_SESSION

SESSION_PAGE = f"/sessions/{CAPTURED}"
FLAKY_SQL = f"""SELECT func_or_class_name, state, count(*) AS attempts FROM tasks
WHERE session = '{CAPTURED_SESSION}' AND func_or_class_name IN ('flaky', 'square')
GROUP BY ALL ORDER BY func_or_class_name, state"""


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    archive = two_runs_archive(tmp_path_factory.mktemp("sql"))
    settings = ServerSettings(cache_dir=tmp_path_factory.mktemp("cache"), refresh_interval=3600)
    with TestClient(create_app(HistoryServer(open_storage(str(archive)), settings))) as test_client:
        # The archive's views hold the sessions whose snapshots are written: opening them writes them now
        # rather than when the background job index gets to them.
        for path in (A, B, CAPTURED):
            assert test_client.get(f"/api/v1/sessions/{path}").status_code == 200
        yield test_client


def result_rows(html: str) -> list[list[str]]:
    """The result table's body, cell texts without the row number."""
    table = re.search(r'<table class="result">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert table, "no result table"
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)
    return [[unescape(cell.strip()) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)][1:] for row in rows]


def download_link(html: str) -> str:
    link = re.search(r'<a href="([^"]+)" download>Download CSV</a>', html)
    assert link, "no download link"
    return unescape(link.group(1))


def test_a_querys_rows_appear_in_the_table(client: TestClient) -> None:
    page = client.get("/sql", params={"q": FLAKY_SQL})
    assert page.status_code == 200
    assert result_rows(page.text) == [["flaky", "FAILED", "1"], ["flaky", "FINISHED", "1"], ["square", "FINISHED", "6"]]
    assert "<strong>3 rows</strong>" in page.text
    # The query stays in its box, and the JSON link is its twin.
    assert unescape(re.search(r"<textarea[^>]*>(.*?)</textarea>", page.text, re.S).group(1)) == FLAKY_SQL
    twin = client.get("/api/v1/sql", params={"q": FLAKY_SQL}).json()
    assert twin["columns"] == ["func_or_class_name", "state", "attempts"]
    assert twin["rows"] == [["flaky", "FAILED", 1], ["flaky", "FINISHED", 1], ["square", "FINISHED", 6]]
    assert (twin["row_count"], twin["truncated"], twin["numeric"]) == (3, False, [False, False, True])
    # The same values POST answers.
    posted = client.post("/api/v1/sql", json={"sql": FLAKY_SQL}).json()
    assert [list(row.values()) for row in posted] == twin["rows"]


def test_the_page_shows_the_first_rows_and_says_when_the_server_cut_the_result(client: TestClient) -> None:
    sql = "SELECT range AS n, range * 2 AS twice FROM range(12000)"
    twin = client.get("/api/v1/sql", params={"q": sql}).json()
    assert twin["truncated"] is True and twin["row_count"] == len(twin["rows"]) == twin["max_rows"] == 10_000
    page = client.get("/sql", params={"q": sql}).text
    rows = result_rows(page)
    assert len(rows) == PAGE_ROWS and rows[0] == ["0", "0"] and rows[-1] == [str(PAGE_ROWS - 1), str(2 * PAGE_ROWS - 2)]
    assert "10,000 rows" in page and "truncated" in page and "showing the first 1,000" in page
    small = client.get("/sql", params={"q": "SELECT * FROM range(5)"}).text
    assert "truncated" not in small and "showing the first" not in small


@pytest.mark.parametrize(("sql", "reason"), [
    ("SELECT no_such_column FROM tasks", 'Referenced column "no_such_column" not found'),
    ("SELECT * FROM read_csv('/etc/passwd')", "is not allowed"),
    ("DROP VIEW tasks", "Only a single read-only SELECT"),
    ("SELEC 1", "syntax error"),
])  # fmt: skip
def test_a_bad_query_shows_its_reason_beside_it_with_400(client: TestClient, sql: str, reason: str) -> None:
    page = client.get("/sql", params={"q": sql}, headers={"accept": "text/html"})
    assert page.status_code == 400
    error = re.search(r'<p class="error" role="alert">(.*?)</p>', page.text, re.S)
    assert error and reason in unescape(error.group(1))
    # Still the console, with the query to fix.
    assert unescape(re.search(r"<textarea[^>]*>(.*?)</textarea>", page.text, re.S).group(1)) == sql
    assert '<table class="result">' not in page.text
    twin = client.get("/api/v1/sql", params={"q": sql})
    assert twin.status_code == 400 and reason in twin.json()["error"]


def test_the_csv_download_has_the_querys_header_and_rows(client: TestClient) -> None:
    page = client.get("/sql", params={"q": FLAKY_SQL}).text
    link = download_link(page)
    assert link.startswith("/api/v1/sql?") and parse_qs(urlsplit(link).query) == {"q": [FLAKY_SQL], "format": ["csv"]}
    download = client.get(link)
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert download.headers["content-disposition"] == 'attachment; filename="query.csv"'
    assert list(csv.reader(io.StringIO(download.text))) == [
        ["func_or_class_name", "state", "attempts"], ["flaky", "FAILED", "1"], ["flaky", "FINISHED", "1"],
        ["square", "FINISHED", "6"],
    ]  # fmt: skip
    assert download.headers["x-rows"] == "3" and download.headers["x-truncated"] == "false"


def test_a_sessions_console_sees_that_session_only(client: TestClient) -> None:
    sql = "SELECT DISTINCT session FROM tasks ORDER BY session"
    everywhere = client.get("/api/v1/sql", params={"q": sql}).json()["rows"]
    assert everywhere == [[A.split("/")[2]], [B.split("/")[2]], [CAPTURED_SESSION]]
    page = client.get(f"{SESSION_PAGE}/sql", params={"q": sql})
    assert page.status_code == 200 and result_rows(page.text) == [[CAPTURED_SESSION]]
    assert 'aria-current="page">SQL</a>' in page.text  # the session's own tab
    twin = client.get(f"/api/v1{SESSION_PAGE}/sql", params={"q": sql}).json()
    assert twin["rows"] == [[CAPTURED_SESSION]] and twin["session"] == CAPTURED
    # The download of a session's console is of that session too.
    download = client.get(download_link(page.text))
    assert download.text.splitlines() == ["session", CAPTURED_SESSION]
    # The whole archive's console narrowed by its session picker.
    narrowed = client.get("/sql", params={"q": sql, "session": A})
    assert result_rows(narrowed.text) == [[A.split("/")[2]]]
    assert parse_qs(urlsplit(download_link(narrowed.text)).query)["session"] == [A]
    assert client.get("/sql", params={"q": sql, "session": "nope"}).status_code == 400


def test_every_example_runs(client: TestClient) -> None:
    console = client.get("/sql")
    assert console.status_code == 200 and '<table class="result">' not in console.text
    links = [unescape(href) for href in re.findall(r'<a href="([^"]+)" title="[^"]*" data-preset', console.text)]
    assert len(links) == len(EXAMPLES)
    for (label, sql), link in zip(EXAMPLES, links, strict=True):
        assert parse_qs(urlsplit(link).query)["q"] == [sql]
        page = client.get(link)
        assert page.status_code == 200, (label, page.text[-2000:])
        assert '<table class="result">' in page.text, label
    slowest = client.get("/api/v1/sql", params={"q": dict(EXAMPLES)["Slowest functions (p95)"]}).json()
    assert slowest["columns"][:2] == ["func_or_class_name", "attempts"] and slowest["rows"]
    assert client.get("/api/v1/sql").json()["rows"] == []


def test_typing_a_query_and_pressing_ctrl_enter_runs_it(page: Any, ui_url: str) -> None:
    # Opened once, the session's snapshot is written and the archive's views hold its tasks.
    assert httpx.get(f"{ui_url}/api/v1{SESSION_PAGE}").status_code == 200
    page.goto(f"{ui_url}/sql")
    box = page.locator("textarea[name=q]")
    box.click()
    box.fill("")
    page.keyboard.type("SELECT func_or_class_name, count(*) AS attempts FROM tasks\n"
                       "WHERE func_or_class_name = 'square' GROUP BY ALL")  # fmt: skip
    with page.expect_navigation():
        page.keyboard.press("Control+Enter")
    page.wait_for_selector("table.result tbody tr")
    assert "q=SELECT" in page.url
    cells = page.locator("table.result tbody tr").first.locator("td").all_inner_texts()
    assert cells == ["1", "square", "6"]
    assert page.locator("text=1 row").count() >= 1
    page.screenshot(path="/tmp/sql-page.png", full_page=True)
    # A preset runs on a click, and the box then holds its query.
    page.click("text=Slowest functions (p95)")
    page.wait_for_selector("table.result tbody tr")
    assert page.locator("textarea[name=q]").input_value() == dict(EXAMPLES)["Slowest functions (p95)"]
    assert page.locator("table.result thead th").all_inner_texts()[1] == "func_or_class_name"
