"""The timeline: its bars view (bars that are the tasks' own times; per-pixel cells, bounded and adding up,
when there are too many), the page and its JSON twin (the Chrome trace, downloadable), and the page in a
real browser: bars drawn on the canvas, a click opening the task, the view kept in the URL."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from fastapi.testclient import TestClient

from archive.layout import SessionRef
from archive.storage import open_storage
from bench.archive_synth import write_session
from historyserver.app import create_app
from historyserver.server import HistoryServer, ServerSettings

from .uiserver import CAPTURED_SESSION

SESSION = f"/sessions/default/local/{CAPTURED_SESSION}"
BARS = f"/api/v1{SESSION}/timeline/bars"
SYNTH = SessionRef("ml-team", "synth-gantt", "session_2026-11-20_08-00-00_000000_1")
SYNTH_BARS = f"/api/v1/sessions/{SYNTH.namespace}/{SYNTH.cluster}/{SYNTH.session}/timeline/bars"


@pytest.fixture(scope="module")
def client(ui_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ui_url, timeout=60) as session:
        yield session


def ran_attempts(client: httpx.Client) -> set[tuple[str, int, int, int]]:
    """(task_id, attempt, start, end) of every attempt that started, from the tasks list (which leaves out
    driver tasks, as the Gantt does)."""
    items = client.get(f"/api/v1{SESSION}/tasks", params={"limit": 1000}).json()["items"]
    return {
        (task["task_id"], task["attempt_number"], task["start_time_ms"], task["end_time_ms"] or task["start_time_ms"])
        for task in items
        if task["start_time_ms"] is not None
    }


def test_bars_of_the_captured_session_are_its_tasks_times(client: httpx.Client) -> None:
    summary = client.get(f"/api/v1{SESSION}/timeline/summary").json()
    answer = client.get(BARS).json()
    assert answer["mode"] == "bars"
    expected = ran_attempts(client)
    assert len(expected) == summary["attempts"] == answer["attempts"] == len(answer["bars"]) > 20
    assert {(bar[4], bar[5], bar[1], bar[2]) for bar in answer["bars"]} == expected
    # Rows and keys are the summary's: a row per worker, the failures coloured as FAILED.
    row_ids = {row[0] for row in summary["rows"]}
    states = {entry["key"]: entry["name"] for entry in summary["states"]}
    assert {bar[0] for bar in answer["bars"]} <= row_ids
    failed = {bar[4] for bar in answer["bars"] if states[bar[3]] == "FAILED"}
    tasks = client.get(f"/api/v1{SESSION}/tasks", params={"state": "FAILED", "limit": 100}).json()["items"]
    assert failed == {task["task_id"] for task in tasks if task["start_time_ms"] is not None}
    functions = {entry["key"]: entry["name"] for entry in summary["functions"]}
    by_function = client.get(BARS, params={"color_by": "function"}).json()["bars"]
    assert "square" in {functions[bar[3]] for bar in by_function}


def test_a_window_holds_the_attempts_overlapping_it(client: httpx.Client) -> None:
    everything = client.get(BARS).json()["bars"]
    middle = sorted(bar[1] for bar in everything)[len(everything) // 2]
    window = {"start_ms": middle, "end_ms": middle + 2000}
    inside = client.get(BARS, params=window).json()["bars"]
    assert inside and all(bar[1] < middle + 2000 and bar[2] >= middle for bar in inside)
    assert len(inside) == sum(1 for bar in everything if bar[1] < middle + 2000 and bar[2] >= middle)


def test_too_many_bars_become_cells_bounded_by_the_width_that_add_up(client: httpx.Client) -> None:
    attempts = client.get(BARS).json()["attempts"]
    width = 40
    answer = client.get(BARS, params={"max_bars": 5, "width_px": width}).json()
    assert answer["mode"] == "cells" and "bars" not in answer
    per_row = Counter(cell[0] for cell in answer["cells"])
    assert max(per_row.values()) <= width
    assert all(0 <= cell[1] <= cell[2] < width and cell[3] >= 1 and cell[5] <= cell[3] for cell in answer["cells"])
    assert len({(cell[0], cell[1]) for cell in answer["cells"]}) == len(answer["cells"])
    assert sum(cell[3] for cell in answer["cells"]) == answer["attempts"] == attempts
    assert sum(cell[5] for cell in answer["cells"]) == 3  # the capture's three failed attempts


def test_rows_can_be_asked_for_a_few_at_a_time(client: httpx.Client) -> None:
    summary = client.get(f"/api/v1{SESSION}/timeline/summary").json()
    everything = client.get(BARS).json()["bars"]
    some = client.get(BARS, params={"row_start": 2, "row_count": 3}).json()["bars"]
    wanted = {row[0] for row in summary["rows"][2:5]}
    assert some and {bar[0] for bar in some} <= wanted
    assert len(some) == sum(1 for bar in everything if bar[0] in wanted)


@pytest.mark.parametrize(
    "params",
    [{"color_by": "colour"}, {"start_ms": 10, "end_ms": 5}, {"width_px": 0}, {"max_bars": 0}, {"row_count": 5000}],
)
def test_bad_bars_parameters_say_what_to_do(client: httpx.Client, params: dict) -> None:
    answer = client.get(BARS, params=params)
    assert answer.status_code in (400, 422), answer.text
    if answer.status_code == 400:
        assert answer.json()["error"]


def test_the_page_is_light_and_its_twin_is_the_trace_which_downloads(client: httpx.Client) -> None:
    html = client.get(f"{SESSION}/timeline", headers={"accept": "text/html"})
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    embedded = re.search(r'<script type="application/json" id="timeline-data">(.*?)</script>', html.text, re.S)
    data = json.loads(embedded[1])
    assert data == client.get(f"/api/v1{SESSION}/timeline/summary").json()
    assert f'href="/api/v1{SESSION}/timeline?download=1"' in html.text
    trace = client.get(f"/api/v1{SESSION}/timeline").json()
    assert isinstance(trace, list) and trace and trace[0]["ph"] == "X"
    download = client.get(f"/api/v1{SESSION}/timeline", params={"download": 1})
    assert download.headers["content-disposition"] == f'attachment; filename="{CAPTURED_SESSION}-trace.json"'
    assert download.json() == trace


def test_a_job_without_attempts_says_so(client: httpx.Client) -> None:
    html = client.get(f"{SESSION}/timeline", params={"job_id": "ffffffff"}, headers={"accept": "text/html"}).text
    assert "No task attempt of job" in html and "<canvas" not in html
    assert client.get(BARS, params={"job_id": "ffffffff"}).json() == {
        "start_ms": 0, "end_ms": 1, "width_px": 1200, "color_by": "state", "job_id": "ffffffff", "max_bars": 20000,
        "mode": "bars", "attempts": 0, "bars": [],
    }  # fmt: skip


# --- a bigger, synthetic session -----------------------------------------------------------------


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("synth-gantt")
    write_session(open_storage(str(root / "archive")), SYNTH, 3000, seed=11, nodes=3, duration_s=120)
    settings = ServerSettings(cache_dir=root / "cache", refresh_interval=3600)
    with TestClient(create_app(HistoryServer(open_storage(str(root / "archive")), settings))) as test_client:
        yield test_client


def test_cells_of_a_synthetic_session_add_up_in_any_window(synth: TestClient) -> None:
    everything = synth.get(SYNTH_BARS, params={"max_bars": 100_000}).json()
    assert everything["mode"] == "bars" and everything["attempts"] > 2500
    bars = everything["bars"]
    start, end = everything["start_ms"], everything["end_ms"]
    for window in [(start, end), (start + (end - start) // 3, start + (end - start) // 2)]:
        for width in (50, 700):
            answer = synth.get(SYNTH_BARS, params={"start_ms": window[0], "end_ms": window[1], "width_px": width,
                                                   "max_bars": 100}).json()  # fmt: skip
            assert answer["mode"] == "cells"
            assert max(Counter(cell[0] for cell in answer["cells"]).values()) <= width
            in_window = sum(1 for bar in bars if bar[1] < window[1] and bar[2] >= window[0])
            assert sum(cell[3] for cell in answer["cells"]) == answer["attempts"] == in_window
            # An attempt's cell is the pixel it starts in (or 0 when it started before the window).
            first = min(answer["cells"], key=lambda cell: (cell[0], cell[1]))
            low, high = window
            starts = [bar[1] for bar in bars if bar[0] == first[0] and bar[1] < high and bar[2] >= low]
            pixels = [max(0, int((start - low) * width / (high - low))) for start in starts]
            assert pixels.count(first[1]) == first[3]


# --- in a browser --------------------------------------------------------------------------------


def open_timeline(page, ui_url: str, query: str = "") -> dict:
    page.goto(f"{ui_url}{SESSION}/timeline{query}")
    canvas = page.locator("canvas#gantt")
    page.wait_for_function("document.getElementById('gantt').dataset.state === 'ready'")
    return {"drawn": int(canvas.get_attribute("data-drawn")), "mode": canvas.get_attribute("data-mode"),
            "sample": json.loads(canvas.get_attribute("data-sample") or "null")}  # fmt: skip


def painted_pixels(page) -> int:
    """Pixels of the plot (right of the labels, below the axis) that differ from its top-left one."""
    return page.evaluate("""() => {
        const canvas = document.getElementById('gantt');
        const ratio = canvas.width / canvas.clientWidth;
        const x = Math.round(200 * ratio), y = Math.round(30 * ratio);
        const image = canvas.getContext('2d').getImageData(x, y, canvas.width - x, canvas.height - y).data;
        let painted = 0;
        for (let i = 0; i < image.length; i += 4) {
            if (image[i] !== image[0] || image[i + 1] !== image[1] || image[i + 2] !== image[2]) painted++;
        }
        return painted;
    }""")


def test_the_timeline_draws_bars_and_a_click_opens_the_task(page, ui_url: str) -> None:
    # The task page is another page's business: here a stand-in answers, so only the link is tested.
    stand_in = "<title>task</title>task"
    page.route(re.compile(r".*/tasks/[0-9a-f]+\?attempt=\d+$"),
               lambda route: route.fulfill(status=200, content_type="text/html", body=stand_in))  # fmt: skip
    shown = open_timeline(page, ui_url)
    assert shown["mode"] == "bars" and shown["drawn"] >= 40
    assert painted_pixels(page) > 2000
    page.screenshot(path="/tmp/timeline-page.png", full_page=True)
    sample = shown["sample"]
    assert re.fullmatch(rf"{SESSION}/tasks/[0-9a-f]+\?attempt=0", sample["href"])
    page.locator("canvas#gantt").click(position={"x": sample["x"], "y": sample["y"]})
    page.wait_for_url(f"{ui_url}{sample['href']}")


def test_zoom_colour_and_keys_are_kept_in_the_url(page, ui_url: str) -> None:
    open_timeline(page, ui_url)
    canvas = page.locator("canvas#gantt")
    canvas.focus()
    page.keyboard.press("+")
    page.keyboard.press("ArrowRight")
    page.get_by_text("Function", exact=True).click()
    page.wait_for_function("new URLSearchParams(location.search).get('color_by') === 'function'")
    page.wait_for_function("document.getElementById('gantt').dataset.state === 'ready'")
    query = parse_qs(urlparse(page.url).query)
    start, end = int(query["start_ms"][0]), int(query["end_ms"][0])
    summary = page.evaluate("JSON.parse(document.getElementById('timeline-data').textContent)")
    whole = summary["end_ms"] - summary["start_ms"]
    assert end - start < whole * 0.6  # zoomed in about twice
    assert "square" in page.locator("#gantt-legend").inner_text()
    # The pasted URL opens the same view.
    shown = open_timeline(page, ui_url, "?" + urlparse(page.url).query)
    assert parse_qs(urlparse(page.url).query)["start_ms"] == [str(start)]
    assert page.locator('input[name="color_by"][value="function"]').is_checked()
    assert shown["drawn"] > 0
    # [ and ] select a bar from the keyboard; Enter would open it, the link says where.
    canvas.focus()
    page.keyboard.press("]")
    link = page.locator("#gantt-selected a")
    assert re.search(r"/tasks/[0-9a-f]+\?attempt=\d+$", link.get_attribute("href"))


def test_the_timeline_in_cells_and_in_the_dark(page, ui_url: str) -> None:
    # The page asks for the default max_bars; a window's worth of cells is forced through the API here.
    page.emulate_media(color_scheme="dark")
    page.route(re.compile(r".*/timeline/bars\?.*"),
               lambda route: route.continue_(url=route.request.url + "&max_bars=5"))  # fmt: skip
    shown = open_timeline(page, ui_url)
    assert shown["mode"] == "cells" and shown["drawn"] > 0
    assert "each cell is a pixel" in page.locator("#gantt-status").inner_text()
    assert painted_pixels(page) > 500
    page.screenshot(path="/tmp/timeline-cells-dark.png", full_page=True)


def test_the_page_without_javascript_still_links_the_trace(client: httpx.Client) -> None:
    html = client.get(f"{SESSION}/timeline", params={"job_id": "02000000"}, headers={"accept": "text/html"}).text
    assert "download=1&amp;job_id=02000000" in html
    assert '<option value="02000000" selected>' in html
