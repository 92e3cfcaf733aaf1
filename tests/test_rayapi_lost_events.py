"""Ray's API on a session where Ray lost task definitions (its buffers overflow under bursts): Ray's own
CLI and SDK must still read every list and summary we answer, and nothing is counted as a failure."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from ray.util.state import common as state_common
from ray.util.state import state_cli

from archive import documents, layout
from archive.parquet import rows_to_table, table_to_parquet
from archive.schema import EVENTS
from archive.storage import open_storage
from historyserver.app import create_app
from historyserver.server import HistoryServer, ServerSettings

from .conftest import fixture_posts
from .test_reconstruct import RUN1_EXPORT, capture_rows

REF = layout.SessionRef("team-a", "burst", "session_2026-11-28_19-03-57_108652_5250")
BASE = f"/ray/{REF.path}"


TASK_DEFINITIONS = ("TASK_DEFINITION_EVENT", "ACTOR_TASK_DEFINITION_EVENT")


def lost_definitions(rows: list[dict[str, Any]]) -> set[str]:
    """A normal task, an actor's creation task and an actor task whose definitions Ray never sent."""
    lost: dict[str, str] = {}
    for row in rows:
        if row["event_type"] not in TASK_DEFINITIONS:
            continue
        task_id = row["task_id"]
        kind = "creation" if task_id.startswith("f" * 16) else row["event_type"]
        if task_id[16:40] != "f" * 24 or kind != "creation":  # not the driver's (nil unique and actor)
            lost.setdefault(kind, task_id)
    return set(lost.values())


@pytest.fixture(scope="module")
def lossy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, set[str]]]:
    root = tmp_path_factory.mktemp("lossy")
    rows = capture_rows(fixture_posts(), RUN1_EXPORT)
    lost = lost_definitions(rows)
    kept = [row for row in rows if not (row["event_type"] in TASK_DEFINITIONS and row["task_id"] in lost)]
    storage = open_storage(str(root / "archive"))
    part = layout.part_key("events", REF, "head", "1764547200000-00000000")
    storage.put(part, table_to_parquet(rows_to_table(kept, EVENTS)))
    start_ms = min(row["timestamp"] for row in rows) // 1_000_000
    manifest = documents.Manifest(REF.namespace, REF.cluster, REF.session, start_time_ms=start_ms)
    storage.put(layout.manifest_key(REF), documents.encode(manifest))
    closed = documents.Closed(closed_at_ms=start_ms + 600_000, closed_by="test", reason="RayCluster deleted")
    storage.put(layout.closed_key(REF), documents.encode(closed))
    settings = ServerSettings(cache_dir=root / "cache", refresh_interval=3600, index_jobs=False)
    with TestClient(create_app(HistoryServer(storage, settings))) as client:
        yield client, lost


def answer(client: TestClient, path: str, **params: object) -> Any:
    response = client.get(f"{BASE}/api/v0/{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]["result"]


@pytest.mark.parametrize("detail", [False, True])
def test_rays_sdk_reads_every_task_we_list(lossy: tuple[TestClient, set[str]], detail: bool) -> None:
    client, lost = lossy
    assert len(lost) == 3  # a normal task, an actor creation and an actor task
    listed = answer(client, "tasks", limit=10000, detail=detail)["result"]
    # What `ray list tasks` does with each row; it refuses the whole list at the first it cannot convert.
    states = [state_common.dict_to_state(row, state_common.StateResource.TASKS) for row in listed]
    without = {state.task_id: state for state in states if state.task_id in lost}
    assert set(without) == lost
    for task in without.values():
        assert (task.name, task.func_or_class_name) == ("", "")  # unknown, not made up
        assert task.state != "FAILED"
    # The type a lost definition would have given is what the task id says.
    assert {task.type for task in without.values()} == {"NORMAL_TASK", "ACTOR_CREATION_TASK", "ACTOR_TASK"}


def test_the_summary_counts_every_task_and_rays_cli_prints_it(lossy: tuple[TestClient, set[str]]) -> None:
    client, lost = lossy
    listed = answer(client, "tasks", limit=10000)
    summary = answer(client, "tasks/summarize")["result"]["node_id_to_summary"]
    cluster = summary["cluster"]
    counted = sum(sum(entry["state_counts"].values()) for entry in cluster["summary"].values())
    assert counted == listed["total"]  # the tasks without a definition too, under ""
    assert sum(cluster["summary"][""]["state_counts"].values()) == len(lost)
    printed = state_cli.format_summary_output(summary, resource=state_common.StateResource.TASKS)
    assert "FINISHED" in printed


def test_a_type_filter_finds_what_the_list_shows(lossy: tuple[TestClient, set[str]]) -> None:
    client, lost = lossy
    found = set()
    for kind in ("NORMAL_TASK", "ACTOR_CREATION_TASK", "ACTOR_TASK"):
        rows = answer(client, "tasks", limit=10000, filter_keys="type", filter_predicates="=", filter_values=kind)
        assert {row["type"] for row in rows["result"]} == {kind}
        found |= {row["task_id"] for row in rows["result"]} & lost
    assert found == lost
