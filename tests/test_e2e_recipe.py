"""The Ray Data recipe on a real Ray, on the archive the real-Ray run made: a history server derives the session's
snapshot (as a replica does) into SeaweedFS, and the recipe runs as a job submitted to a Ray head, with the RayJob's
entrypoint and the store's settings in the cluster's environment (as every pod of the RayJob has them)."""

from __future__ import annotations

import collections
import csv
import json
import shlex
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest
import yaml

from archive.storage import open_storage
from historyserver.server import HistoryServer, ServerSettings
from ray_history.localray import LocalRay, free_port

from .manifests import DEPLOY

pytestmark = pytest.mark.ray


def test_the_failure_rates_recipe_runs_as_a_rayjob_on_the_archive(ray_run, tmp_path: Path) -> None:
    # A copy of the run's archive under a prefix of its own: the snapshot derived here must not be one the other
    # end-to-end tests find already written.
    options = ray_run.storage.options
    archive = open_storage(ray_run.storage.uri + "-recipe", options)
    for info in ray_run.storage.list(""):
        archive.put(info.key, ray_run.storage.get(info.key))
    history = HistoryServer(archive, ServerSettings(cache_dir=tmp_path / "cache", refresh_interval=3600,
                                                    index_jobs=False))  # fmt: skip
    history.catalog.refresh()
    history.open("tests", "e2e", ray_run.session_name)
    history.sessions.snapshots.wait_written()

    [job] = yaml.safe_load_all((DEPLOY / "recipes" / "rayjob-failure-rates.yaml").read_text())
    month = ray_run.session_name[len("session_") : len("session_") + 7]
    output = tmp_path / "rates.csv"
    words = shlex.split(job["spec"]["entrypoint"])
    assert words[:2] == ["python", "/recipes/failure_rates.py"]
    words = [sys.executable, str(DEPLOY / "recipes" / "failure_rates.py"), *words[2:]]
    words[words.index("--month") + 1] = month
    words[words.index("--output") + 1] = str(output)

    # What the RayJob's pods get from their env and the ray-history-s3 Secret.
    env = {"RAY_HISTORY_ARCHIVE": archive.uri, "AWS_ENDPOINT_URL": options.endpoint_url,
           "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": options.access_key,
           "AWS_SECRET_ACCESS_KEY": options.secret_key}  # fmt: skip
    # Ray's socket paths must stay short: a folder directly under the system temp dir.
    temp_dir = Path(tempfile.mkdtemp(prefix="rh-recipe-", dir="/tmp")) / "ray"
    ray = LocalRay(temp_dir=temp_dir, gcs_port=free_port(), dashboard_port=free_port(), metrics_port=free_port(),
                   env=env)  # fmt: skip
    ray.start(num_cpus=2)
    try:
        ray.submit_job(shlex.join(words), "failure-rates", {"recipe": "failure_rates"})
        info = ray.wait_job("failure-rates", timeout=600)
        with urllib.request.urlopen(f"{ray.dashboard_url}/api/jobs/failure-rates/logs", timeout=30) as answer:
            logs = json.loads(answer.read())["logs"]
    finally:
        ray.stop()
        shutil.rmtree(temp_dir.parent, ignore_errors=True)
    assert info["status"] == "SUCCEEDED", logs[-5000:]
    assert f"1 sessions in {month}: 1 with a snapshot, 0 without" in logs, logs[-3000:]

    with output.open() as file:
        rates = {row["function"]: row for row in csv.DictReader(file)}
    assert {row["namespace"] for row in rates.values()} == {"tests"}
    # Per function, what Ray's own state API listed while the cluster lived.
    expected: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for task in ray_run.state["tasks"]:
        if task["state"] in ("FINISHED", "FAILED") and task.get("type") != "DRIVER_TASK":
            expected[task["func_or_class_name"]][task["state"]] += 1
    assert {"boom", "flaky", "crash"} <= {name.rsplit(".", 1)[-1] for name in expected}
    for function, states in expected.items():
        assert int(rates[function]["attempts"]) == states["FINISHED"] + states["FAILED"], function
        assert int(rates[function]["failed"]) == states["FAILED"], function
