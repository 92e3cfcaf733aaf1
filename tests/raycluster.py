"""One real Ray run per test session: SeaweedFS, the collector, Ray with the event stream, a workload.

Everything is recorded while Ray lives (what the state API lists, the submission's status), then
Ray is stopped and the collector gets SIGTERM, as at the end of a RayJob. Tests read the archive.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archive.storage import S3Options, Storage, open_storage
from ray_history.localray import collector_command, free_port, new_local_ray, wait_healthy
from ray_history.workloads import probe, sleeper

from .collectors import start_collector_process, stop_collector_process
from .objectstores import seaweedfs_server

BUCKET = "ray-history"
PREFIX = "archive"
SUBMISSION_ID = "probe-submitted"
KILLED_SUBMISSION_ID = "killed-mid-job"


@dataclass
class RayRun:
    storage: Storage
    state: dict[str, list[dict[str, Any]]]
    submission: dict[str, Any]
    driver_output: str
    collector_exit_code: int
    collector_log: Path
    session_name: str
    session_dir: Path  # Ray's session folder, left on disk after Ray stopped
    workload_started_ns: int
    workload_ended_ns: int

    @property
    def driver_outcome(self) -> dict[str, Any]:
        """The JSON summary the direct driver's probe printed (worker output may follow it)."""
        for line in reversed(self.driver_output.splitlines()):
            if line.startswith("{") and "placement_group_id" in line:
                return json.loads(line)  # type: ignore[no-any-return]
        raise AssertionError(f"the probe printed no summary:\n{self.driver_output[-2000:]}")


@contextmanager
def ray_run() -> Iterator[RayRun]:
    # Ray's socket paths must stay short: a folder directly under the system temp dir.
    workdir = Path(tempfile.mkdtemp(prefix="rh-e2e-", dir="/tmp"))
    with seaweedfs_server(workdir / "seaweedfs") as s3:
        s3.create_bucket(BUCKET)
        archive = f"s3://{BUCKET}/{PREFIX}"
        credentials = {
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "AWS_REGION": "us-east-1",
        }
        port = free_port()
        collector_log = workdir / "collector.log"
        ray = new_local_ray(workdir / "ray", f"http://127.0.0.1:{port}/v1/events")
        collector = start_collector_process(
            collector_command(archive, port, workdir / "spool", workdir / "ray", "--s3-endpoint", s3.endpoint_url,
                              "--seal-interval", "2", "--cluster", "e2e", "--namespace", "tests",
                              "--log-interval", "2", "--metrics-interval", "2", "--dashboard-interval", "2",
                              "--dashboard-url", ray.dashboard_url),
            collector_log, env=credentials,
        )  # fmt: skip
        try:
            wait_healthy(f"http://127.0.0.1:{port}", process=collector)
            ray.start()
            workload_started_ns = time.time_ns()
            ray.submit_job(f"{sys.executable} {probe.__file__}", SUBMISSION_ID, {"owner": "tests"})
            submission = ray.wait_job(SUBMISSION_ID)
            driver = ray.run_driver(Path(probe.__file__))
            if driver.returncode != 0:
                raise RuntimeError(f"the direct driver failed:\n{driver.stderr[-3000:]}")
            dump = subprocess.run(
                [sys.executable, str(Path(__file__).with_name("ray_state_dump.py")), ray.dashboard_url],
                capture_output=True, text=True, timeout=120, check=True,
            )  # fmt: skip
            state = json.loads(dump.stdout)
            workload_ended_ns = time.time_ns()
            session_dir = (workdir / "ray" / "session_latest").resolve()
            # A job still running when the cluster goes: its tasks must not stay RUNNING unexplained in the history.
            ray.submit_job(f"{sys.executable} {sleeper.__file__}", KILLED_SUBMISSION_ID, {"owner": "tests"})
            _wait_for_running_tasks(ray.dashboard_url, "sleep_for_an_hour", 2)
        finally:
            ray.stop()
            exit_code = stop_collector_process(collector)
        storage = open_storage(archive, S3Options(endpoint_url=s3.endpoint_url, access_key=s3.access_key,
                                                  secret_key=s3.secret_key, region="us-east-1"))  # fmt: skip
        yield RayRun(storage, state, submission, driver.stdout, exit_code, collector_log, session_dir.name,
                     session_dir, workload_started_ns, workload_ended_ns)  # fmt: skip
    shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_running_tasks(dashboard_url: str, name: str, count: int, timeout: float = 120.0) -> None:
    """Until the dashboard lists `count` tasks called `name` as RUNNING (their events are then out too)."""
    url = f"{dashboard_url}/api/v0/tasks?limit=1000&filter_keys=name&filter_predicates=%3D&filter_values={name}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=30) as answer:
            tasks = json.loads(answer.read())["data"]["result"]["result"]
        if sum(task["state"] == "RUNNING" for task in tasks) >= count:
            time.sleep(3)  # the RUNNING events reach the collector a moment later
            return
        time.sleep(1)
    raise TimeoutError(f"{count} {name} tasks were not RUNNING after {timeout:.0f} s")
