"""Kept answers: the same request answered again from memory, within a byte budget."""

from __future__ import annotations

from fastapi.testclient import TestClient

from historyserver.answers import AnswerCache

BASE = "/ray/default/local/session_2026-11-28_19-03-57_108652_5250/api/v0"


def test_an_answer_is_computed_once_and_the_budget_holds() -> None:
    cache = AnswerCache(max_bytes=800)
    computed: list[str] = []

    def make(key: str, size: int) -> bytes:
        computed.append(key)
        return key.encode().ljust(size, b".")

    assert cache.get("a", lambda: make("a", 100)) == cache.get("a", lambda: make("a", 100))
    assert computed == ["a"]
    for key in "bcdefgh":
        cache.get(key, lambda key=key: make(key, 100))
    assert cache.bytes <= 800
    cache.get("i", lambda: make("i", 100))  # over the budget: the least recently used ("a") goes
    cache.get("b", lambda: make("b", 100))
    cache.get("a", lambda: make("a", 100))
    assert (computed.count("a"), computed.count("b")) == (2, 1) and cache.bytes <= 800
    cache.get("huge", lambda: make("huge", 101))  # over an eighth of the budget: answered, never kept
    cache.get("huge", lambda: make("huge", 101))
    assert computed.count("huge") == 2


def test_a_repeated_ray_list_is_the_same_bytes_from_memory(client: TestClient) -> None:
    answers = client.app.state.history.answers  # type: ignore[attr-defined]
    first = client.get(f"{BASE}/tasks", params={"limit": 7, "detail": "true"})
    hits = answers.hits
    again = client.get(f"{BASE}/tasks", params={"limit": 7, "detail": "true"})
    assert again.status_code == first.status_code == 200
    assert again.content == first.content and answers.hits == hits + 1
    other = client.get(f"{BASE}/tasks", params={"limit": 8, "detail": "true"})
    assert len(other.json()["data"]["result"]["result"]) == 8 and answers.hits == hits + 1
    refused = client.get(f"{BASE}/tasks", params={"limit": "x"})  # refused before any lookup
    assert refused.status_code == 400


def test_a_repeated_task_summary_is_kept_and_a_refused_one_is_not(client: TestClient) -> None:
    answers = client.app.state.history.answers  # type: ignore[attr-defined]
    first = client.get(f"{BASE}/tasks/summarize")
    hits = answers.hits
    assert client.get(f"{BASE}/tasks/summarize").content == first.content and answers.hits == hits + 1
    for _ in range(2):  # Ray's 400, computed again each time: an error is never kept
        assert client.get(f"{BASE}/tasks/summarize", params={"summary_by": "colour"}).status_code == 400
    assert answers.hits == hits + 1


TASKS = "/sessions/default/local/session_2026-11-28_19-03-57_108652_5250/tasks"


def test_a_tasks_page_and_its_json_twin_share_one_kept_answer(client: TestClient) -> None:
    answers = client.app.state.history.answers  # type: ignore[attr-defined]
    params = {"sort": "-duration_ms", "limit": 5}
    first = client.get(f"/api/v1{TASKS}", params=params)
    hits = answers.hits
    again = client.get(f"/api/v1{TASKS}", params=dict(reversed(params.items())))  # the query's order is no matter
    assert again.status_code == first.status_code == 200
    assert again.content == first.content and answers.hits == hits + 1
    page = client.get(TASKS, params=params)
    assert page.status_code == 200 and answers.hits == hits + 2
    assert all(item["task_id"][:12] in page.text for item in first.json()["items"])
    deeper = client.get(f"/api/v1{TASKS}", params={**params, "offset": 5})
    assert deeper.json()["items"] != first.json()["items"] and answers.hits == hits + 2
    for _ in range(2):  # refused, and never kept
        assert client.get(f"/api/v1{TASKS}", params={"sort": "colour"}).status_code == 400
    assert answers.hits == hits + 2


def test_every_answer_says_how_long_the_server_took(client: TestClient) -> None:
    answer = client.get(f"/api/v1{TASKS}", params={"limit": 3})
    name, _, duration = answer.headers["server-timing"].partition(";dur=")
    assert name == "app" and 0 < float(duration) < 60_000
    metrics = client.get("/metrics").text
    assert 'ray_history_server_requests_total{status="200"}' in metrics
    assert "ray_history_server_request_seconds_bucket" in metrics
