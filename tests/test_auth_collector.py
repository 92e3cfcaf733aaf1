"""The collector's receiver with a token (`ray-history collect --token-file`): a POST without it, or with
another, is refused 401 and stores nothing; with it (a bearer token, or the export address's password as Ray's
own publisher sends it) the events are archived as always. Ray's publisher is Ray's code, imported (no Ray runs).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from collector.auth import presented_token
from ray_history.localray import collector_command, free_port, terminate, wait_healthy

from .collectors import start_collector_process
from .conftest import fixture_posts

TOKEN = "collector-token-4b7e91c2d5a8f3e6"
# Ray's aggregator agent's HTTP publisher, given an export address with credentials in it, as a pod would set
# RAY_DASHBOARD_AGGREGATOR_AGENT_EVENTS_EXPORT_ADDR: the events and the address as Ray has them.
RAY_PUBLISHER = """
import asyncio, json, os, sys
from concurrent.futures import ThreadPoolExecutor
from google.protobuf.json_format import ParseDict
from ray.core.generated import events_base_event_pb2
from ray.dashboard.modules.aggregator.publisher.async_publisher_client import AsyncHttpPublisherClient, PublishBatch

events = [ParseDict(e, events_base_event_pb2.RayEvent(), ignore_unknown_fields=True) for e in json.load(sys.stdin)]

async def publish():
    client = AsyncHttpPublisherClient(sys.argv[1], ThreadPoolExecutor(1))
    stats = await client.publish(PublishBatch(events=events))
    await client.close()
    print(json.dumps({"ok": stats.is_publish_successful, "published": stats.num_events_published}))

asyncio.run(publish())
"""


RAY_ENV = {**os.environ, "RAY_DASHBOARD_AGGREGATOR_AGENT_EXPOSABLE_EVENT_TYPES": "ALL"}


def received(url: str) -> float:
    """Events the receiver accepted, from its /metrics (a counter per source)."""
    text = httpx.get(f"{url}/metrics").text
    return sum(float(value) for value in re.findall(r"^ray_history_collector_events_received_total\{[^}]*\} (\S+)$",
                                                    text, re.M))  # fmt: skip


@pytest.fixture
def collector(tmp_path: Path) -> tuple[str, Path]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")  # as `echo` or a mounted Secret leaves it
    port = free_port()
    command = collector_command(str(tmp_path / "archive"), port, tmp_path / "spool", tmp_path / "ray",
                                "--token-file", str(token_file), "--seal-interval", "0.2")  # fmt: skip
    process = start_collector_process(command, tmp_path / "collector.log")
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process=process)
    yield url, tmp_path
    terminate(process, 60)


def posted(url: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{url}/v1/events", json=fixture_posts()[0], headers=headers, timeout=30)


def test_a_post_without_the_token_is_refused_and_stores_nothing(collector: tuple[str, Path]) -> None:
    url, _ = collector
    for headers in ({}, {"Authorization": "Bearer another-token-entirely"}, {"Authorization": TOKEN},
                    {"Authorization": "Basic cmF5Om5vdC1pdA=="}):  # fmt: skip
        answer = posted(url, headers)
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"] == 'Bearer realm="ray-history-collector"'
    metrics = httpx.get(f"{url}/metrics").text
    assert 'ray_history_collector_requests_rejected_total{reason="unauthorized"} 4.0' in metrics
    assert received(url) == 0
    # The probes stay open: the kubelet carries no token.
    assert httpx.get(f"{url}/healthz").status_code == 200 and httpx.get(f"{url}/readyz").status_code == 200


def test_the_token_as_a_bearer_or_as_rays_export_address_password_is_accepted(collector: tuple[str, Path]) -> None:
    url, _ = collector
    batch = fixture_posts()[0]
    answer = posted(url, {"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.json()["accepted"] == len(batch)
    # What Ray's aggregator agent does with RAY_DASHBOARD_AGGREGATOR_AGENT_EVENTS_EXPORT_ADDR=http://ray:TOKEN@...
    address = url.replace("http://", f"http://ray:{TOKEN}@") + "/v1/events"
    done = subprocess.run([sys.executable, "-c", RAY_PUBLISHER, address], input=json.dumps(fixture_posts()[1]),
                          capture_output=True, text=True, timeout=180,
                          env=RAY_ENV)  # fmt: skip
    assert json.loads(done.stdout.splitlines()[-1]) == {"ok": True, "published": len(fixture_posts()[1])}, done.stderr
    # With another password, or none, Ray's publisher is refused (it logs the failure, without the address's
    # credentials, and keeps the events to send again).
    wrong = url.replace("http://", "http://ray:wrong-token-31d7c0a9@") + "/v1/events"
    done = subprocess.run([sys.executable, "-c", RAY_PUBLISHER, wrong], input=json.dumps(batch),
                          capture_output=True, text=True, timeout=180,
                          env=RAY_ENV)  # fmt: skip
    assert json.loads(done.stdout.splitlines()[-1]) == {"ok": False, "published": 0}
    assert "401" in done.stderr and "wrong-token-31d7c0a9" not in done.stderr
    assert received(url) == len(batch) + len(fixture_posts()[1])


def test_the_authorization_header_is_read_as_bearer_or_basic() -> None:
    assert presented_token("Bearer abc") == "abc" and presented_token("bearer  abc ") == "abc"
    assert presented_token("Basic cmF5OnMzY3JldDp3aXRoOmNvbG9ucw==") == "s3cret:with:colons"  # ray:s3cret:with:colons
    for header in (None, "", "Basic !!!", "Basic bm9jb2xvbg==", "Digest x", "abc"):
        assert presented_token(header) is None, header


def test_collect_refuses_an_empty_token_file_and_two_tokens(tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n")
    command = collector_command(str(tmp_path / "archive"), free_port(), tmp_path / "spool", tmp_path / "ray",
                                "--token-file", str(empty))  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and f"the token file {empty} is empty" in done.stderr
    empty.write_text(TOKEN)
    done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "RAY_HISTORY_COLLECTOR_TOKEN": "x" * 20})  # fmt: skip
    assert done.returncode != 0 and "not both" in done.stderr
