"""Ray's own CLI pointed at a dead session through its prefix: `ray list`, `ray summary` and `ray job` give
what the live cluster gave (the real-Ray end-to-end session, its live state API answers beside it)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .raycluster import SUBMISSION_ID
from .uiserver import served

pytestmark = pytest.mark.ray
TERMINAL = ("FINISHED", "FAILED")
RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="module")
def address(ray_run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served(ray_run.storage, tmp_path_factory.mktemp("cli-cache"), refresh_interval=3600) as url:
        yield f"{url}/ray/tests/e2e/{ray_run.session_name}"


def ray(*args: str) -> str:
    done = subprocess.run([RAY, *args], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"ray {' '.join(args)}: {done.stderr[-3000:]}"
    return done.stdout


def test_ray_list_tasks_gives_what_the_live_cluster_listed(ray_run, address: str) -> None:
    ours = json.loads(ray("list", "tasks", "--address", address, "--format", "json", "--limit", "10000", "--detail"))
    by_attempt = {(task["task_id"], task["attempt_number"]): task for task in ours}
    assert len(ray_run.state["tasks"]) >= 20
    for task in ray_run.state["tasks"]:
        mine = by_attempt[task["task_id"], task["attempt_number"]]
        for field in ("name", "func_or_class_name", "type", "job_id", "node_id", "actor_id"):
            assert mine[field] == task[field], (task["name"], field)
        if task["state"] in TERMINAL:
            assert (mine["state"], mine["error_type"]) == (task["state"], task["error_type"]), task["name"]
    failed = json.loads(ray("list", "tasks", "--address", address, "--format", "json", "--filter", "state=FAILED"))
    assert failed and {task["state"] for task in failed} == {"FAILED"}


def test_ray_list_actors_jobs_and_nodes_give_the_live_ids(ray_run, address: str) -> None:
    for kind, key in (("actors", "actor_id"), ("jobs", "job_id"), ("nodes", "node_id")):
        listed = json.loads(ray("list", kind, "--address", address, "--format", "json", "--limit", "10000"))
        assert {item[key] for item in ray_run.state[kind] if item.get(key)} <= {item[key] for item in listed}, kind


def test_ray_summary_tasks_counts_the_functions(ray_run, address: str) -> None:
    summary = ray("summary", "tasks", "--address", address)
    for name in {task["func_or_class_name"] for task in ray_run.state["tasks"] if task["type"] == "NORMAL_TASK"}:
        assert name in summary, name


def test_ray_job_list_status_and_logs_for_the_submission(address: str) -> None:
    assert SUBMISSION_ID in ray("job", "list", "--address", address)
    assert f"'{SUBMISSION_ID}' succeeded" in ray("job", "status", SUBMISSION_ID, "--address", address)
    assert "placement_group_id" in ray("job", "logs", SUBMISSION_ID, "--address", address)
