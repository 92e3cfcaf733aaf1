"""Ray 2.60's state API under /ray/{ns}/{cluster}/{session}/api/v0/..., compared with what the live
dashboard answered for the same session (tests/fixtures/ray-2.60/dashboard_api), on an archive a real
collector made from that capture.

Where our answer differs from the live one, it is on purpose and said here:
- tasks: ours has one task more, `_StatsActor.get_datasets`: the capture's own `/api/data/datasets` request
  made it after the task list was taken. `runtime_env_info` lacks Ray's `runtime_env_config` (not in the
  task events). Times: Ray floors nanoseconds to float ms, ours are the same ms as ints (equal as numbers).
- nodes: the live answer was taken while the node lived (ALIVE, end 0); in the finished session it is DEAD.
- workers: the dashboard's own driver (job 01000000) is not in our snapshot; workers alive in the live
  answer are dead in the finished session (is_alive, exit, end time), and Ray gave its drivers uint64
  "unset" launch times and start/end times a few ms off the driver job events we take them from.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from archive import layout
from archive.storage import open_storage
from bench.archive_synth import write_session
from historyserver.app import create_app
from historyserver.server import HistoryServer, ServerSettings

from .conftest import live_answer as live

SESSION = "session_2026-11-28_19-03-57_108652_5250"
BASE = f"/ray/default/local/{SESSION}"
EXTRA_TASK = "_StatsActor.get_datasets"  # made by the capture's own /api/data/datasets request, after the list
ENVELOPE = {"total", "num_after_truncation", "num_filtered", "result", "partial_failure_warning", "warnings"}


def state(client: TestClient, path: str, **params: object) -> dict:
    response = client.get(f"{BASE}/api/v0/{path}", params=params)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["result"], answer["msg"]) == (True, "")
    return answer["data"]["result"]


def tasks_of(answer: dict) -> dict[tuple[str, int], dict]:
    return {(task["task_id"], task["attempt_number"]): task for task in answer["result"]
            if task["name"] != EXTRA_TASK}  # fmt: skip


@pytest.mark.parametrize("capture, detail", [("api_v0_tasks_limit_1000.json", False),
                                             ("api_v0_tasks_limit_1000_detail_1.json", True)])  # fmt: skip
def test_tasks_come_back_field_for_field_as_the_live_state_api_listed_them(client: TestClient, capture: str,
                                                                           detail: bool) -> None:  # fmt: skip
    expected = live(capture)["data"]["result"]
    answer = state(client, "tasks", limit=1000, detail=int(detail))
    assert answer.keys() == ENVELOPE
    assert (answer["partial_failure_warning"], answer["warnings"]) == ("", None)
    ours = tasks_of(answer)
    assert answer["total"] == answer["num_after_truncation"] == answer["num_filtered"] == expected["total"] + 1
    assert ours.keys() == {(task["task_id"], task["attempt_number"]) for task in expected["result"]}
    # Ray sorts by task id: so do we.
    assert [task["task_id"] for task in answer["result"]] == sorted(task["task_id"] for task in answer["result"])
    for task in expected["result"]:
        mine = ours[task["task_id"], task["attempt_number"]]
        assert list(mine) == list(task), "Ray's columns, in Ray's order"
        for field, value in task.items():
            if field == "runtime_env_info":  # runtime_env_config is not in the task events
                assert mine[field]["serialized_runtime_env"] == value["serialized_runtime_env"]
            elif field == "profiling_data" and value:  # the same spans; Ray lists them in arrival order
                assert {k: v for k, v in mine[field].items() if k != "events"} == \
                    {k: v for k, v in value.items() if k != "events"}  # fmt: skip
                key = lambda span: (span["event_name"], span["start_time"])  # noqa: E731
                assert sorted(mine[field]["events"], key=key) == sorted(value["events"], key=key)
            else:
                assert mine[field] == value, (task["task_id"], field)


@pytest.mark.parametrize("resource, capture, key", [
    ("actors", "api_v0_actors_limit_1000_detail_1.json", "actor_id"),
    ("placement_groups", "api_v0_placement_groups_detail_1.json", "placement_group_id"),
    ("nodes", "api_v0_nodes_detail_1.json", "node_id"),
    ("workers", "api_v0_workers_limit_100_detail_1.json", "worker_id"),
    ("jobs", "api_v0_jobs.json", "submission_id"),
])  # fmt: skip
def test_actors_groups_nodes_workers_and_jobs_as_the_live_state_api_listed_them(
    client: TestClient, resource: str, capture: str, key: str
) -> None:
    expected = live(capture)["data"]["result"]
    answer = state(client, resource, limit=1000, detail=1 if resource != "jobs" else 0)
    assert answer.keys() == ENVELOPE
    ours = {row[key] or row["job_id"]: row for row in answer["result"]}
    # Neither lived past the capture in a way the archive can tell (see the module's docstring).
    differ: dict[str, set[str]] = {"nodes": {"state", "state_message", "end_time_ms"},
                                   "workers": {"is_alive", "exit_type", "exit_detail", "worker_launch_time_ms",
                                               "worker_launched_time_ms", "start_time_ms", "end_time_ms"}}  # fmt: skip
    dashboard_driver = "01000000ffffffffffffffffffffffffffffffffffffffffffffffff"
    listed = [row for row in expected["result"] if row[key] != dashboard_driver]
    assert answer["total"] == expected["total"] - (len(expected["result"]) - len(listed))
    assert ours.keys() == {row[key] or row["job_id"] for row in listed}
    for row in listed:
        mine = ours[row[key] or row["job_id"]]
        assert list(mine) == list(row), "Ray's columns, in Ray's order"
        for field, value in row.items():
            # Only where the live answer saw it alive (a worker or node alive then is dead in the archive).
            alive = row.get("is_alive") or row.get("state") == "ALIVE" or row.get("worker_type") == "DRIVER"
            if field in differ.get(resource, set()) and alive:
                continue
            assert mine[field] == value, (row[key], field)
    if resource == "nodes":
        assert ours[listed[0][key]]["state"] == "DEAD" and ours[listed[0][key]]["end_time_ms"] > 0


def test_a_state_filter_gives_exactly_the_failed_tasks(client: TestClient) -> None:
    expected = {(task["task_id"], task["attempt_number"]) for task in live("api_v0_tasks_limit_1000.json")["data"]
                ["result"]["result"] if task["state"] == "FAILED"}  # fmt: skip
    answer = state(client, "tasks", filter_keys="state", filter_predicates="=", filter_values="FAILED", limit=1000)
    assert set(tasks_of(answer)) == expected and len(answer["result"]) == len(expected) > 0
    assert answer["num_filtered"] == len(expected)
    # Ray's GCS applies the state filter itself: its total counts after it.
    assert answer["total"] == len(expected)
    # Case-insensitive, as Ray compares strings; != keeps the rest.
    assert set(tasks_of(state(client, "tasks", filter_keys="STATE", filter_predicates="=", filter_values="failed",
                              limit=1000))) == expected  # fmt: skip
    rest = state(client, "tasks", filter_keys="state", filter_predicates="!=", filter_values="FAILED", limit=1000)
    assert rest["num_filtered"] + len(expected) == state(client, "tasks", limit=1000)["total"]


def test_filters_zip_up_and_convert_values_as_ray_does(client: TestClient) -> None:
    response = client.get(f"{BASE}/api/v0/tasks", params=[
        ("filter_keys", "state"), ("filter_predicates", "="), ("filter_values", "FAILED"),
        ("filter_keys", "attempt_number"), ("filter_predicates", "="), ("filter_values", "1"),
        ("limit", 1000),
    ])  # fmt: skip
    answer = response.json()["data"]["result"]
    assert answer["result"] and all(t["state"] == "FAILED" and t["attempt_number"] == 1 for t in answer["result"])
    assert answer["total"] > answer["num_filtered"]  # attempt_number is not filtered at Ray's source
    nodes = state(client, "nodes", filter_keys="is_head_node", filter_predicates="=", filter_values="true")
    assert nodes["num_filtered"] == 1
    actors = state(client, "actors", filter_keys="class_name", filter_predicates="=", filter_values="Counter")
    assert [actor["class_name"] for actor in actors["result"]] == ["Counter"]


@pytest.mark.parametrize("params, message", [
    ({"filter_keys": "nope", "filter_predicates": "=", "filter_values": "x"},
     "The given filter column nope is not supported. Enter filters with \u2013-filter key=value or \u2013-filter "
     "key!=value Supported filter columns: {'actor_id', 'attempt_number', 'error_type', 'func_or_class_name', "
     "'is_debugger_paused', 'job_id', 'language', 'name', 'node_id', 'parent_task_id', 'placement_group_id', "
     "'state', 'task_id', 'type', 'worker_id', 'worker_pid'}"),
    ({"filter_keys": "state", "filter_predicates": "~", "filter_values": "x"},
     "Unsupported filter predicate ~ is given. Available predicates: =, !=."),
    ({"filter_keys": "attempt_number", "filter_predicates": "=", "filter_values": "one"},
     "Invalid filter `--filter attempt_number one` for a int type column. Please provide an integer filter "
     "`--filter attempt_number [int]`"),
    ({"limit": "many"}, "invalid literal for int() with base 10: 'many'"),
    ({"detail": "maybe"}, "Failed to convert a value maybe of type <class 'str'> to <class 'bool'>"),
])  # fmt: skip
def test_bad_filters_are_refused_with_rays_message_and_status(client: TestClient, params: dict, message: str) -> None:
    response = client.get(f"{BASE}/api/v0/tasks", params=params)
    assert response.status_code == 400
    assert response.json() == {"result": False, "msg": message, "data": {"result": None}}


def test_a_bad_actor_state_is_refused_as_rays_source_refuses_it(client: TestClient) -> None:
    response = client.get(f"{BASE}/api/v0/actors", params={"filter_keys": "state", "filter_predicates": "=",
                                                           "filter_values": "sleepy"})  # fmt: skip
    assert response.status_code == 400
    assert response.json()["msg"] == "Invalid actor state for filtering: SLEEPY"


def test_drivers_are_left_out_unless_exclude_driver_is_false(client: TestClient) -> None:
    with_drivers = state(client, "tasks", limit=1000, exclude_driver="false")
    without = state(client, "tasks", limit=1000)
    drivers = [task for task in with_drivers["result"] if task["type"] == "DRIVER_TASK"]
    assert drivers and with_drivers["total"] == without["total"] + len(drivers)


def test_limit_truncates_but_totals_stay(client: TestClient) -> None:
    answer = state(client, "tasks", limit=5)
    assert len(answer["result"]) == 5 and answer["num_filtered"] == answer["total"] > 5


def test_task_summary_by_function_is_the_live_one(client: TestClient) -> None:
    expected = live("api_v0_tasks_summarize.json")["data"]["result"]
    response = client.get(f"{BASE}/api/v0/tasks/summarize")
    assert response.status_code == 200
    answer = response.json()["data"]["result"]
    assert answer.keys() == expected.keys()
    cluster, live_cluster = (a["result"]["node_id_to_summary"]["cluster"] for a in (answer, expected))
    extra = cluster["summary"].pop(EXTRA_TASK)
    assert extra["state_counts"] == {"FINISHED": 1}
    assert cluster["summary"] == live_cluster["summary"]
    assert cluster["total_actor_tasks"] == live_cluster["total_actor_tasks"] + 1
    assert {k: cluster[k] for k in ("total_tasks", "total_actor_scheduled", "summary_by")} == \
        {k: live_cluster[k] for k in ("total_tasks", "total_actor_scheduled", "summary_by")}  # fmt: skip
    assert answer["total"] == expected["total"] + 1
    bad = client.get(f"{BASE}/api/v0/tasks/summarize", params={"summary_by": "colour"})
    assert bad.status_code == 400 and bad.json()["msg"].startswith("summary_by must be one of")


def test_actor_summary_counts_states_per_class(client: TestClient) -> None:
    live_actors = live("api_v0_actors_limit_1000_detail_1.json")["data"]["result"]["result"]
    response = client.get(f"{BASE}/api/v0/actors/summarize")
    cluster = response.json()["data"]["result"]["result"]["node_id_to_summary"]["cluster"]
    assert cluster["total_actors"] == len(live_actors) and cluster["summary_by"] == "class"
    for name in {actor["class_name"] for actor in live_actors}:
        counts: dict[str, int] = {}
        for actor in live_actors:
            if actor["class_name"] == name:
                counts[actor["state"]] = counts.get(actor["state"], 0) + 1
        assert cluster["summary"][name] == {"class_name": name, "state_counts": counts}


def test_an_unknown_session_is_404(client: TestClient) -> None:
    for path in ("api/v0/tasks", "api/jobs/", "api/version", "nodes?view=summary"):
        assert client.get(f"/ray/default/local/session_2000-01-01_00-00-00_000000_1/{path}").status_code == 404


def test_more_than_rays_10000_row_cap_is_answered_whole(tmp_path: Path) -> None:
    ref = layout.SessionRef("ml-research", "synth", "session_2026-11-28_19-03-57_108652_5250")
    storage = open_storage(str(tmp_path / "archive"))
    write_session(storage, ref, tasks=10_500, seed=7)
    settings = ServerSettings(cache_dir=tmp_path / "cache", refresh_interval=3600, index_jobs=False)
    with TestClient(create_app(HistoryServer(storage, settings))) as synth:
        response = synth.get(f"/ray/{ref.path}/api/v0/tasks", params={"limit": 20_000})
        answer = response.json()["data"]["result"]
        assert answer["total"] > 10_000
        assert len(answer["result"]) == answer["num_after_truncation"] == answer["num_filtered"] == answer["total"]
