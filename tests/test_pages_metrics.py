"""The metrics pages: the list (filter, quick links, an empty state) and a metric's chart, both twins of
their JSON views, and in a real browser: filtering, picking a metric, the chart's SVG lines and points."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest

from historyserver.views.metrics import default_step_s

from .uiserver import CAPTURED_SESSION

SESSION = f"/sessions/default/local/{CAPTURED_SESSION}"
HTML = {"accept": "text/html"}


@pytest.fixture(scope="module")
def client(ui_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ui_url, timeout=60) as session:
        yield session


def html(client: httpx.Client, path: str, **params: str) -> str:
    answer = client.get(path, params=params, headers=HTML)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html"), answer.text[:300]
    return answer.text


def test_the_list_shows_every_metric_with_quick_links_and_a_filter(client: httpx.Client) -> None:
    names = [item["name"] for item in client.get(f"/api/v1{SESSION}/metrics").json()["items"]]
    page = html(client, f"{SESSION}/metrics")
    assert all(f'data-name="{name}"' in page for name in names) and len(names) > 100
    for metric in ("ray_node_cpu_utilization", "ray_node_mem_used", "ray_object_store_used_memory"):
        assert f"{SESSION}/metrics/query?name={metric}&amp;by=node&amp;agg=avg" in page
    assert "ray_node_gpus_utilization" not in page  # no GPU in the capture: no GPU link
    # The filter in the URL hides the rest even without JavaScript.
    filtered = html(client, f"{SESSION}/metrics", q="node_mem")
    shown = re.findall(r'<tr data-name="([^"]+)">', filtered)
    assert shown and all("node_mem" in name for name in shown)


def test_no_metric_is_a_clear_empty_state(client: httpx.Client) -> None:
    page = html(client, f"{SESSION}/metrics", prefix="nothing_like_this_")
    assert "No metric starts with" in page and "<table" not in page


def test_the_chart_page_embeds_its_json_twin(client: httpx.Client) -> None:
    path = f"{SESSION}/metrics/query"
    params = {"name": "ray_tasks", "by": "cluster", "agg": "sum"}
    page = html(client, path, **params)
    embedded = json.loads(re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page, re.S)[1])
    assert embedded == client.get(f"/api/v1{path}", params=params).json()
    assert embedded["step_s"] == 15.0 and embedded["series"][0]["node"] == "cluster"
    assert '<option value="cluster" selected>' in page and '<option value="sum" selected>' in page
    assert client.get(f"{path}?name=no_such_metric", headers=HTML).status_code == 404


def test_a_long_range_gets_a_coarser_default_step() -> None:
    assert default_step_s(0, 3_600_000) == 15.0
    assert default_step_s(0, 7 * 86_400_000) == 900.0  # a week: 672 points
    assert default_step_s(0, 400 * 86_400_000) == 43_200.0  # 800 points of 12 h
    assert default_step_s(0, 4000 * 86_400_000) == 345_600.0  # past a day a step: the range over 1000


def test_pick_a_metric_and_see_its_chart(page, ui_url: str) -> None:
    page.goto(f"{ui_url}{SESSION}/metrics")
    page.get_by_label("Filter").fill("cpu_util")
    assert page.locator("#metric-count").inner_text() == "1 of 252 metrics"
    assert "q=cpu_util" in page.url
    page.get_by_role("link", name="ray_node_cpu_utilization").click()
    page.wait_for_url(re.compile(r".*/metrics/query\?name=ray_node_cpu_utilization.*"))
    svg = page.locator("#chart-svg")
    page.wait_for_function("document.getElementById('chart-svg').dataset.points > 0")
    assert svg.get_attribute("data-series") == "1"
    assert svg.locator("path.line").count() == 1 and svg.locator("circle").count() >= 1
    assert "UTC" in svg.text_content()
    page.screenshot(path="/tmp/metrics-chart.png", full_page=True)
    # The legend hides and shows a series, from the keyboard too.
    button = page.locator("#chart-legend button").first
    button.focus()
    page.keyboard.press("Enter")
    assert button.get_attribute("aria-pressed") == "false" and svg.locator("path.line").count() == 0
    page.keyboard.press("Enter")
    assert svg.locator("path.line").count() == 1
    # A quick link to memory, then one series for the cluster: the state is the URL.
    page.get_by_role("link", name="Memory", exact=True).click()
    page.wait_for_url(re.compile(r".*name=ray_node_mem_used.*"))
    page.locator("select[name=by]").select_option("cluster")
    page.wait_for_url(re.compile(r".*by=cluster.*"))
    page.wait_for_function("document.getElementById('chart-svg').dataset.points > 0")
    assert page.locator("#chart-legend").inner_text().strip() == "cluster"


def test_the_metrics_list_in_the_dark(page, ui_url: str) -> None:
    page.emulate_media(color_scheme="dark")
    page.goto(f"{ui_url}{SESSION}/metrics?q=object_store")
    assert page.locator("#metric-table tbody tr:not([hidden])").count() >= 5
    page.screenshot(path="/tmp/metrics-list-dark.png", full_page=True)
