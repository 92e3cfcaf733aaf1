"""The Ray Data recipe (deploy/recipes/failure_rates.py) without Ray: how it finds a month's sessions and their
snapshots in a local archive and in S3 (moto), and its per-batch step on a real snapshot, against what Ray's own
state API listed for the same run. The Ray Data part runs in tests/test_e2e_recipe.py, on a real Ray."""

from __future__ import annotations

import collections
import gzip
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archive.storage import open_storage
from historyserver.server import HistoryServer, ServerSettings

from .conftest import CAPTURED_SESSION, fixture_bytes
from .manifests import DEPLOY
from .objectstores import moto_server, s3_client

MONTH = CAPTURED_SESSION[len("session_") : len("session_") + 7]  # 2026-11


def _recipe() -> ModuleType:
    # Loaded from its file, as the RayJob runs it: it is not part of any package.
    spec = importlib.util.spec_from_file_location("failure_rates", DEPLOY / "recipes" / "failure_rates.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["failure_rates"] = module
    spec.loader.exec_module(module)
    return module


recipe = _recipe()


@pytest.fixture(scope="module")
def archive(captured_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the captured archive whose one session has had its snapshot written by a history server."""
    root = tmp_path_factory.mktemp("recipe") / "archive"
    shutil.copytree(captured_archive, root)
    shutil.rmtree(root / "snapshots", ignore_errors=True)  # another test may have opened it: derive it here
    settings = ServerSettings(cache_dir=root.parent / "cache", refresh_interval=3600, index_jobs=False)
    history = HistoryServer(open_storage(str(root)), settings)
    history.catalog.refresh()
    history.open("default", "local", CAPTURED_SESSION)
    history.sessions.snapshots.wait_written()
    return root


def test_the_months_sessions_are_found_from_events_and_their_snapshots(archive: Path) -> None:
    fs, root = recipe.open_archive(str(archive))
    sessions = recipe.sessions_of_month(fs, root, MONTH)
    assert [session.path for session in sessions] == [f"default/local/{CAPTURED_SESSION}"]
    assert recipe.sessions_of_month(fs, root, "2026-10") == []
    assert recipe.sessions_of_month(fs, root, MONTH, namespace="elsewhere") == []
    paths, missing = recipe.snapshot_paths(fs, root, sessions)
    assert paths == [str(archive / "snapshots" / "default" / "local" / CAPTURED_SESSION / "tasks.parquet")]
    assert missing == []


def test_a_session_without_a_snapshot_is_listed_not_left_out(archive: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    bare = tmp_path / "archive"
    shutil.copytree(archive, bare)
    shutil.rmtree(bare / "snapshots")
    # Without a snapshot there is nothing for Ray Data to read: the recipe says so and stops before starting Ray.
    assert recipe.main(["--archive", str(bare), "--month", MONTH]) == 0
    out = capsys.readouterr().out
    assert f"1 sessions in {MONTH}: 0 with a snapshot, 1 without" in out
    assert (
        f"no snapshot yet (open it in ray-history, or let its job index derive it): default/local/{CAPTURED_SESSION}"
        in out
    )


def test_failure_rates_per_function_are_what_rays_state_api_listed(archive: Path) -> None:
    path = archive / "snapshots" / "default" / "local" / CAPTURED_SESSION / "tasks.parquet"
    table = pq.read_table(path, columns=recipe.COLUMNS)
    # What Ray Data's include_paths adds to every row.
    table = table.append_column("path", pa.array([str(path)] * table.num_rows))
    attempts = recipe.terminal_attempts(table)
    counts = attempts.group_by(["namespace", "function"]).aggregate([("failed", "count"), ("failed", "sum")])
    counts = counts.rename_columns(["namespace", "function", "attempts", "failed"])
    rates = {row["function"]: row for row in recipe.rates(counts).to_pylist()}
    assert {row["namespace"] for row in rates.values()} == {"default"}

    listed = json.loads(gzip.decompress(fixture_bytes("dashboard_api", "api_v0_tasks_limit_1000_detail_1.json.gz")))
    expected: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for task in listed["data"]["result"]["result"]:
        if task["state"] in ("FINISHED", "FAILED") and task["type"] != "DRIVER_TASK":
            expected[task["func_or_class_name"]][task["state"]] += 1
    # The one function the archive has beyond the list: the dashboard's datasets query, made after the list was.
    assert set(rates) - set(expected) == {"_StatsActor.get_datasets"}
    for function, states in expected.items():
        assert rates[function]["attempts"] == states["FINISHED"] + states["FAILED"], function
        assert rates[function]["failed"] == states["FAILED"], function
    assert rates["flaky"]["failure_rate"] == 0.5 and rates["always_fails"]["failure_rate"] == 1.0
    # Most failures first.
    assert recipe.rates(counts)["failed"].to_pylist() == sorted(
        recipe.rates(counts)["failed"].to_pylist(), reverse=True
    )


def test_the_archive_is_read_from_s3_as_the_rayjob_reads_it(archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with moto_server() as endpoint:
        client = s3_client(endpoint, "key", "secret")
        client.create_bucket(Bucket="ray-history")
        for file in archive.rglob("*"):
            if file.is_file():
                client.put_object(
                    Bucket="ray-history", Key=f"archive/{file.relative_to(archive)}", Body=file.read_bytes()
                )
        for key, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret",
                           "AWS_REGION": "us-east-1"}.items():  # fmt: skip
            monkeypatch.setenv(key, value)
        fs, root = recipe.open_archive("s3://ray-history/archive")
        sessions = recipe.sessions_of_month(fs, root, MONTH)
        paths, missing = recipe.snapshot_paths(fs, root, sessions)
        assert [session.session for session in sessions] == [CAPTURED_SESSION] and missing == []
        assert paths == [f"ray-history/archive/snapshots/default/local/{CAPTURED_SESSION}/tasks.parquet"]
        assert pq.read_table(paths[0], filesystem=fs, columns=recipe.COLUMNS).num_rows > 10
