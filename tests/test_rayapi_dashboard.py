"""Ray 2.60's dashboard endpoints (jobs, version, nodes, logical actors, events, cluster status and the
UI's probes) under /ray/{ns}/{cluster}/{session}/, compared with the live dashboard's answers for the
same session; and Ray's own state client reading our answers over HTTP (no Ray cluster involved).

Differences on purpose: the live answers were taken while the node and some actors lived; in the
finished session they are dead. Live readings (CPU, memory, disk, processes) are not archived and are
left out of `nodes?view=summary`; the actor's worker port is null in `logical/actors`.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from historyserver.rayapi.envelope import to_google_style

from .conftest import live_answer as live

SESSION = "session_2026-11-28_19-03-57_108652_5250"
BASE = f"/ray/default/local/{SESSION}"
NODE = "50dae9eb11ba41e336fa66cb35aa1a3832f70b5b1c80e9d237bec012"


def test_jobs_list_and_one_job_are_the_live_ones(client: TestClient) -> None:
    expected = live("api_jobs_.json")
    answer = client.get(f"{BASE}/api/jobs/").json()
    assert isinstance(answer, list)
    assert sorted(answer, key=lambda job: job["submission_id"] or "") == \
        sorted(expected, key=lambda job: job["submission_id"] or "")  # fmt: skip
    # Submissions first, then drivers of their own, as Ray concatenates them.
    assert [job["type"] for job in answer] == ["SUBMISSION", "SUBMISSION", "DRIVER"]
    one = live("api_jobs_probe-job-2.json")
    assert client.get(f"{BASE}/api/jobs/probe-job-2").json() == one
    assert client.get(f"{BASE}/api/jobs/02000000").json() == one  # by its driver's job id too
    assert client.get(f"{BASE}/api/jobs/03000000").json()["type"] == "DRIVER"
    missing = client.get(f"{BASE}/api/jobs/nope")
    assert (missing.status_code, missing.text) == (404, "Job nope does not exist")


def test_a_submissions_logs_are_its_archived_driver_log(client: TestClient) -> None:
    expected = live("api_jobs_probe-job-2_logs.json")
    answer = client.get(f"{BASE}/api/jobs/probe-job-2/logs").json()
    assert answer.keys() == {"logs"}
    # The live answer was read before the driver's last lines were written; the archive has the whole file.
    assert answer["logs"].startswith(expected["logs"]) and "JOB_DRIVER: starting workload" in answer["logs"]
    driver = client.get(f"{BASE}/api/jobs/03000000/logs")
    assert (driver.status_code, driver.text) == (400, "Can only get logs of submission type jobs")


def test_version_is_the_sessions(client: TestClient) -> None:
    expected = live("api_version.json")
    answer = client.get(f"{BASE}/api/version").json()
    assert answer == expected  # ray_version and ray_commit from the GCS's start line in the archived logs


def test_node_summary_has_the_live_raylet_record(client: TestClient) -> None:
    expected = live("nodes_view_summary.json")
    answer = client.get(f"{BASE}/nodes", params={"view": "summary"}).json()
    assert (answer["result"], answer["msg"]) == (True, expected["msg"])
    assert answer["data"].keys() == expected["data"].keys()
    [ours], [theirs] = answer["data"]["summary"], expected["data"]["summary"]
    assert (ours["hostname"], ours["ip"]) == (theirs["hostname"], theirs["ip"])
    for field in ("nodeId", "nodeManagerAddress", "nodeManagerHostname", "nodeName", "isHeadNode", "resourcesTotal",
                  "labels", "startTimeMs"):  # fmt: skip
        assert ours["raylet"][field] == theirs["raylet"][field], field
    assert ours["raylet"]["state"] == "DEAD"  # alive when the live answer was taken
    hosts = client.get(f"{BASE}/nodes", params={"view": "hostNameList"}).json()
    assert hosts["data"] == {"hostNameList": ["vm"]}
    detail = client.get(f"{BASE}/nodes/{NODE}").json()
    assert detail["data"]["detail"]["raylet"]["nodeId"] == NODE and detail["msg"] == "Node details fetched."


def test_logical_actors_are_the_live_ones(client: TestClient) -> None:
    expected = live("logical_actors.json")
    answer = client.get(f"{BASE}/logical/actors").json()
    assert (answer["result"], answer["msg"]) == (True, expected["msg"])
    ours, theirs = answer["data"]["actors"], expected["data"]["actors"]
    assert ours.keys() == theirs.keys()
    for actor_id, actor in theirs.items():
        for field in ("actorId", "jobId", "name", "className", "state", "numRestarts", "pid", "reprName",
                      "actorClass", "requiredResources", "labelSelector"):  # fmt: skip
            assert ours[actor_id][field] == actor[field], (actor_id, field)
        for field in ("nodeId", "ipAddress", "workerId"):
            assert ours[actor_id]["address"][field] == actor["address"][field], (actor_id, field)
        if actor["state"] == "DEAD":
            assert ours[actor_id]["exitDetail"] == actor["exitDetail"], actor_id
    one = client.get(f"{BASE}/logical/actors/{next(iter(theirs))}").json()
    assert one["data"]["detail"]["actorId"] == next(iter(theirs))


def test_the_archived_legacy_events_are_what_the_live_events_answer_gave(client: TestClient) -> None:
    """The collector tails logs/events/event_*.log into LEGACY_EVENT rows; /events groups them as Ray does."""
    expected = live("events.json")
    answer = client.get(f"{BASE}/events").json()
    events = {owner: [to_google_style(event) for event in found] for owner, found in answer["data"]["events"].items()}
    assert events == expected["data"]["events"]


def test_events_answer_in_rays_envelope(client: TestClient) -> None:
    answer = client.get(f"{BASE}/events").json()
    assert (answer["result"], answer["msg"]) == (True, "All events fetched.") and "events" in answer["data"]
    job = client.get(f"{BASE}/events", params={"job_id": "02000000"}).json()
    assert (job["msg"], job["data"]["jobId"]) == ("Job events fetched.", "02000000")


def test_cluster_status_has_the_live_shape_and_the_nodes_resources(client: TestClient) -> None:
    expected = live("api_cluster_status.json")
    answer = client.get(f"{BASE}/api/cluster_status").json()
    assert (answer["result"], answer["msg"]) == (True, expected["msg"])
    assert answer["data"].keys() == expected["data"].keys()
    usage = answer["data"]["clusterStatus"]["loadMetricsReport"]["usageByNode"][NODE]
    live_usage = expected["data"]["clusterStatus"]["loadMetricsReport"]["usageByNode"][NODE]
    assert {name: total for name, (_, total) in usage.items()} == \
        {name: total for name, (_, total) in live_usage.items()}  # fmt: skip


def test_the_uis_probes_answer_without_an_error(client: TestClient) -> None:
    grafana = client.get(f"{BASE}/api/grafana_health").json()
    assert grafana == {"result": True, "msg": "Grafana disabled", "data": {"grafanaHost": "DISABLED"}}
    assert client.get(f"{BASE}/api/prometheus_health").json()["result"] is False
    assert client.get(f"{BASE}/api/authentication_mode").json() == {"authentication_mode": "disabled"}
    platform = client.get(f"{BASE}/api/v0/platform_events")
    assert platform.json() == {"result": True, "msg": "Retrieved platform events", "data": {"events": []}}
    assert client.head(f"{BASE}/api/v0/platform_events").status_code == 200
    assert client.get(f"{BASE}/timezone").json().keys() == {"offset", "value"}
    metadata = client.get(f"{BASE}/api/v0/cluster_metadata").json()
    assert metadata["result"] is True and metadata["data"]["rayVersion"] == "2.60.0"


def test_rays_own_state_client_reads_our_answers(ui_url: str) -> None:
    """ray.util.state over HTTP only: the CLI's `ray list tasks --address .../ray/default/local/<session>`."""
    state = pytest.importorskip("ray.util.state")
    address = f"{ui_url}/ray/default/local/{SESSION}"
    tasks = state.list_tasks(
        address=address, filters=[("state", "=", "FAILED")], limit=1000, raise_on_missing_output=False
    )
    expected = [t for t in live("api_v0_tasks_limit_1000.json")["data"]["result"]["result"] if t["state"] == "FAILED"]
    assert sorted((t.task_id, t.attempt_number) for t in tasks) == \
        sorted((t["task_id"], t["attempt_number"]) for t in expected)  # fmt: skip
    actors = state.list_actors(address=address, detail=True, raise_on_missing_output=False)
    assert {actor.class_name for actor in actors} >= {"Counter", "Doomed"}
    assert len(state.list_nodes(address=address, raise_on_missing_output=False)) == 1
    summary = state.summarize_tasks(address=address, raise_on_missing_output=False)
    assert summary["cluster"]["summary"]["oops"]["state_counts"] == {"FAILED": 1}
