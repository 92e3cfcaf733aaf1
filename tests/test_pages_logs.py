"""The log pages on an archive a real collector made from the real capture: the files per node, the viewer
(numbered lines, paging, tail, downloads), the search whose hits open the viewer at their line, and what a
person sees when a pattern or a file is wrong. The text is compared with the captured files themselves."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from .conftest import FIXTURES
from .uiserver import CAPTURED_NODE, CAPTURED_SESSION

SESSION = f"/sessions/default/local/{CAPTURED_SESSION}"
HTML = {"accept": "text/html"}
CAPTURE = FIXTURES / "logs" / "run1"
WORKER = "worker-48e47177eed42ab21019d88d2b782ef8babad866d75ed1f4fb2b4abd-02000000-6355.out"


class Page(HTMLParser):
    """What a person reads on a page: its links (address, text), its numbered lines and the marked text."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.lines: dict[int, str] = {}
        self.marks: list[str] = []
        self._link: list[str] | None = None
        self._line: int | None = None
        self._in_text = False
        self._mark: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "a" and found.get("href"):
            self._link = [found["href"] or ""]
        elif tag == "tr" and (found.get("id") or "").startswith("L"):
            self._line = int((found["id"] or "")[1:])
            self.lines[self._line] = ""
        elif tag == "td" and found.get("class") == "text" and self._line is not None:
            self._in_text = True
        elif tag == "mark":
            self._mark = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._link is not None:
            self.links.append((self._link[0], "".join(self._link[1:]).strip()))
            self._link = None
        elif tag == "td":
            self._in_text = False
        elif tag == "tr":
            self._line = None
        elif tag == "mark" and self._mark is not None:
            self.marks.append("".join(self._mark))
            self._mark = None

    def handle_data(self, data: str) -> None:
        if self._link is not None:
            self._link.append(data)
        if self._in_text and self._line is not None:
            self.lines[self._line] += data
        if self._mark is not None:
            self._mark.append(data)

    def link(self, text: str) -> str:
        """The address of the first link whose text has `text` in it."""
        return next(href for href, label in self.links if text in label)

    def exact(self, text: str) -> str:
        return next(href for href, label in self.links if label == text)


@pytest.fixture(scope="module")
def client(ui_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ui_url, timeout=60) as session:
        yield session


def read(client: httpx.Client, path: str, status: int = 200) -> tuple[str, Page]:
    answer = client.get(path, headers=HTML)
    assert answer.status_code == status, (path, answer.status_code, answer.text[:500])
    assert answer.headers["content-type"].startswith("text/html")
    parsed = Page()
    parsed.feed(answer.text)
    return answer.text, parsed


def query(href: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(href).query).items()}


def captured_lines(name: str) -> list[str]:
    return (CAPTURE / name).read_text().splitlines()


def test_the_logs_page_lists_every_file_per_node_the_dead_one_too(client: httpx.Client) -> None:
    html, page = read(client, f"{SESSION}/logs")
    listed = client.get(f"/api/v1{SESSION}/logs").json()
    # Every file of the folder: Ray's event files too, archived as events and listed as left out.
    assert listed["total"] == 29 and f'href="/api/v1{SESSION}/logs"' in html
    left_out = {file["filename"] for file in listed["items"] if file["omitted_bytes"]}
    assert left_out == {
        "events/event_JOBS.log",
        "events/event_RAYLET.log",
        "export_events/event_EXPORT_SUBMISSION_JOB.log",
    }
    # The node ended with the cluster: its files are still listed, under its name, id and state.
    assert "Node node-a" in html and ">DEAD<" in html and CAPTURED_NODE in html
    viewer = {query(href)["filename"]: href for href, _ in page.links if "/logs/lines?" in href and "tail" not in href}
    assert set(viewer) == {file["filename"] for file in listed["items"]}
    assert {WORKER, "raylet.err", "jobs/supervisor-probe-job-2.log"} <= set(viewer)
    # A name with a slash is still one query value: the link opens that very file.
    assert "filename=jobs%2Fsupervisor-probe-job-2.log" in viewer["jobs/supervisor-probe-job-2.log"]
    _, supervisor = read(client, viewer["jobs/supervisor-probe-job-2.log"])
    assert [supervisor.lines[1], supervisor.lines[2]] == captured_lines("jobs/supervisor-probe-job-2.log")


def test_the_logs_page_downloads_a_file_and_a_jobs_zip(client: httpx.Client) -> None:
    _, page = read(client, f"{SESSION}/logs")
    download = next(href for href, text in page.links if text == "download" and query(href)["filename"] == WORKER)
    assert client.get(download).content == (CAPTURE / WORKER).read_bytes()
    bundle = zipfile.ZipFile(io.BytesIO(client.get(page.exact("02000000")).content))
    assert f"node-a/{WORKER}" in bundle.namelist()
    assert bundle.read(f"node-a/{WORKER}") == (CAPTURE / WORKER).read_bytes()
    driver = zipfile.ZipFile(io.BytesIO(client.get(page.exact("probe-job-2")).content))
    assert "node-a/job-driver-probe-job-2.log" in driver.namelist()


def test_the_logs_page_filters_by_name_and_node(client: httpx.Client) -> None:
    html, page = read(client, f"{SESSION}/logs?name=RAYLET.")
    shown = {query(href)["filename"] for href, _ in page.links if "/logs/lines?" in href}
    # The name matches in any case, so Ray's own event_RAYLET.log is found too.
    assert shown == {"raylet.err", "raylet.out.head120", "events/event_RAYLET.log"} and "3 of 29 files" in html
    _, by_node = read(client, f"{SESSION}/logs?node_id=node-a&name=")
    assert WORKER in {query(href)["filename"] for href, _ in by_node.links if "/logs/lines?" in href}
    nothing, _ = read(client, f"{SESSION}/logs?node_id=no-such-node")
    assert "No file matches these filters" in nothing


def test_the_viewer_numbers_the_captured_lines_and_links_each(client: httpx.Client) -> None:
    html, page = read(client, f"{SESSION}/logs/lines?node_id={CAPTURED_NODE}&filename={WORKER}")
    captured = captured_lines(WORKER)
    assert page.lines == {number: text for number, text in enumerate(captured, 1)}
    assert page.lines[8] == "flaky: retry attempt succeeded"
    assert 'href="#L8"' in html and f"lines 1\N{EN DASH}{len(captured)} of" in html
    assert query(page.link("download the whole file"))["filename"] == WORKER
    assert f'href="/api/v1{SESSION}/logs/lines?node_id={CAPTURED_NODE}&amp;filename={WORKER}"' in html


def test_the_viewer_pages_through_a_file_and_shows_its_tail(client: httpx.Client) -> None:
    captured = captured_lines("monitor.log")
    _, page = read(client, f"{SESSION}/logs/lines?node_id=node-a&filename=monitor.log&start_line=101&lines=100")
    assert sorted(page.lines) == list(range(101, 201)) and page.lines[150] == captured[149]
    assert query(page.link("previous"))["start_line"] == "1"
    assert query(page.link("next"))["start_line"] == "201"
    assert "start_line" not in query(page.link("first"))
    _, following = read(client, page.link("next"))
    assert sorted(following.lines) == list(range(201, 301))
    _, tail = read(client, page.link("tail"))
    assert sorted(tail.lines) == list(range(len(captured) - 99, len(captured) + 1))
    assert tail.lines[len(captured)] == captured[-1]
    assert not [href for href, text in tail.links if "next" in text]  # nothing after the end


def test_a_search_hit_opens_the_viewer_at_its_line(client: httpx.Client) -> None:
    html, page = read(client, f"{SESSION}/logs/search?pattern=flaky: .* succeeded")
    hits = [href for href, text in page.links if "/logs/lines?" in href and text.isdigit()]
    assert sorted(urlsplit(href).fragment for href in hits) == ["L21", "L8"]
    worker_hit = next(href for href in hits if query(href)["filename"] == WORKER)
    assert worker_hit.endswith("#L8") and int(query(worker_hit)["start_line"]) <= 8
    assert "flaky: retry attempt succeeded" in page.marks  # what the pattern matched is marked
    _, viewer = read(client, worker_hit)
    assert viewer.lines[8] == "flaky: retry attempt succeeded"
    assert "2 matching lines" in html


def test_what_a_person_typed_is_shown_escaped(client: httpx.Client) -> None:
    html, _ = read(client, f"{SESSION}/logs?name=<script>alert(1)</script>")
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    found, _ = read(client, f"{SESSION}/logs/search?pattern=<b>never</b>")
    assert "<b>never" not in found and "&lt;b&gt;never" in found and "No line of this session" in found


def test_a_bad_pattern_or_an_unknown_file_says_why(client: httpx.Client) -> None:
    html, page = read(client, f"{SESSION}/logs/search?pattern=(unclosed", status=400)
    assert "not a valid regular expression" in html and "missing )" in html
    assert SESSION in [href for href, _ in page.links]  # a way back to the session
    missing, _ = read(client, f"{SESSION}/logs/lines?node_id=node-a&filename=nope.log", status=404)
    assert "no log file &#39;nope.log&#39;" in missing


def test_in_a_browser_search_then_open_the_hit_at_its_highlighted_line(page, ui_url: str) -> None:
    page.goto(f"{ui_url}{SESSION}/logs")
    page.get_by_label("Search all files").fill("retry attempt")
    page.keyboard.press("Enter")
    page.wait_for_url("**/logs/search?**")
    page.get_by_role("link", name=f"{WORKER} line 8").click()
    page.wait_for_url("**#L8")
    line = page.locator("tr:target")
    assert line.get_attribute("id") == "L8"
    assert line.locator("td.text").inner_text() == "flaky: retry attempt succeeded"
    assert line.evaluate("row => getComputedStyle(row).backgroundColor") not in ("rgba(0, 0, 0, 0)", "transparent")
    assert line.is_visible() and line.evaluate("row => row.getBoundingClientRect().top < innerHeight")
