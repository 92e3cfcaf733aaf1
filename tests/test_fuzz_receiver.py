"""Seeded fuzzing of the receiver: random mutations of the real captures, sent while another sender
sends good traffic. For every seed, every event acknowledged as accepted is in the archive exactly once,
and nothing is set aside whole."""

from __future__ import annotations

import copy
import json
import random
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from archive.ids import b64_to_hex

from .collectors import collector_thread
from .test_collector import archived_rows

SEEDS = range(10)
HOSTILE_VALUES: list[Any] = [
    None, True, -1, 2**31, 2**63, -(2**63) - 1, 1e308, "", "..", "a b", "x/y", "é", "\u0663", [], {}, [[[]]],
    "3000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "2026-11-28T19:04:08.\u0663Z", "////////", "AgAAAA",
]  # fmt: skip


def _mutate(event: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Change one to three values anywhere in the event (keys included) to something hostile."""
    event = copy.deepcopy(event)
    for _ in range(rng.randint(1, 3)):
        parent: Any = event
        key = rng.choice(list(event))
        # Walk down a random path; stop at a leaf or by chance.
        while isinstance(parent[key], dict | list) and parent[key] and rng.random() < 0.6:
            parent = parent[key]
            key = rng.choice(list(parent)) if isinstance(parent, dict) else rng.randrange(len(parent))
        if isinstance(parent, dict) and rng.random() < 0.15:
            parent[rng.choice(["eventId", "sessionName", "taskAttempt", str(rng.random())])] = parent.pop(key)
        else:
            parent[key] = rng.choice(HOSTILE_VALUES)
    return event


def _raw_mutations(body: bytes, rng: random.Random) -> bytes:
    """Now and then, damage the bytes themselves (inside a string, where a split does not look)."""
    if rng.random() < 0.3:
        at = body.find(b'"state"')
        if at > 0:
            body = body[: at + 2] + b"\xff\xfe" + body[at + 2 :]
    return body


@pytest.mark.parametrize("seed", SEEDS)
def test_every_acknowledged_event_is_archived_once_whatever_else_is_sent(tmp_path: Path, camel_posts, seed) -> None:
    rng = random.Random(seed)
    events = [event for post in camel_posts for event in post]
    good_posts = camel_posts[: len(camel_posts) // 2]
    hostile_source = events[len(events) // 2 :]
    acknowledged: Counter[str] = Counter()
    hostile_accepted: list[int] = []
    errors: list[str] = []

    def good_sender(url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            for post in good_posts:
                answer = client.post("/v1/events", json=post)
                if answer.status_code != 200 or answer.json()["quarantined"]:
                    errors.append(f"good post answered {answer.status_code}: {answer.text[:200]}")
                    continue
                acknowledged.update(b64_to_hex(event["eventId"]) for event in post)

    with collector_thread(tmp_path, seal_interval=0.2) as collector:
        sender = threading.Thread(target=good_sender, args=(collector.url,))
        sender.start()
        with httpx.Client(base_url=collector.url, timeout=30) as client:
            for _ in range(40):
                batch = [_mutate(rng.choice(hostile_source), rng) for _ in range(rng.randint(1, 30))]
                body = _raw_mutations(json.dumps(batch).encode(), rng)
                answer = client.post("/v1/events", content=body, headers={"Content-Type": "application/json"})
                assert answer.status_code in (200, 400), answer.text
                if answer.status_code == 200:
                    result = answer.json()
                    assert result["accepted"] + result["duplicates"] + result["quarantined"] == len(batch)
                    hostile_accepted.append(result["accepted"])
        sender.join()
        metrics = httpx.get(f"{collector.url}/metrics").text
    assert errors == []
    assert "ray_history_collector_segments_set_aside_total 0.0" in metrics
    assert not (tmp_path / "spool" / "unshippable").exists()
    rows = archived_rows(tmp_path / "archive")
    stored = Counter(row["event_id"] for row in rows if row["event_type"] != "QUARANTINED_EVENT")
    for event_id in acknowledged:
        assert stored[event_id] == 1, f"acknowledged event {event_id} is in the archive {stored[event_id]} times"
    # The mutants the collector accepted are there too, each once (some share an id, and count once).
    assert all(count == 1 for count in stored.values())
    assert len(acknowledged) < len(stored) <= len(acknowledged) + sum(hostile_accepted)
    quarantined = [row for row in rows if row["event_type"] == "QUARANTINED_EVENT"]
    assert quarantined and sum(hostile_accepted)  # the run did exercise both answers
