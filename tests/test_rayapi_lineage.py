"""The task summary by lineage is Ray's: Ray's own `to_summary_by_lineage`, run on the rows our prefix lists,
gives the tree our prefix answers (keys, names, nesting, order and counts)."""

from __future__ import annotations

import dataclasses
import json

from fastapi.testclient import TestClient

from .uiserver import CAPTURED_SESSION

BASE = f"/ray/default/local/{CAPTURED_SESSION}"


def listed(client: TestClient, resource: str) -> list[dict]:
    answer = client.get(f"{BASE}/api/v0/{resource}", params={"detail": "true", "limit": 10_000}).json()
    return answer["data"]["result"]["result"]


def test_the_lineage_summary_is_the_one_rays_code_makes_of_the_same_rows(client: TestClient) -> None:
    from ray.util.state.common import TaskSummaries

    answer = client.get(f"{BASE}/api/v0/tasks/summarize", params={"summary_by": "lineage"})
    assert answer.status_code == 200, answer.text
    ours = answer.json()["data"]["result"]["result"]["node_id_to_summary"]["cluster"]
    theirs = TaskSummaries.to_summary_by_lineage(tasks=listed(client, "tasks"), actors=listed(client, "actors"))
    assert ours == json.loads(json.dumps(dataclasses.asdict(theirs)))
    # Not a trivial tree: actors hold their method calls, and the retried task's attempts are counted.
    names = {group["name"] for group in ours["summary"]}
    assert "probe_counter" in json.dumps(ours) or "Counter" in names
    assert ours["summary_by"] == "lineage" and ours["total_tasks"] > 0 and ours["total_actor_tasks"] > 0
