"""The server's own housekeeping: retention and compaction on an interval, the usage gauges on /metrics."""

from __future__ import annotations

import threading
from pathlib import Path

from click.testing import CliRunner
from fastapi.testclient import TestClient

from archive.layout import SessionRef
from archive.storage.local import LocalStorage
from historyserver.app import create_app
from historyserver.maintenance import Maintenance, MaintenanceSettings
from historyserver.server import HistoryServer, ServerSettings
from ray_history.cli import main

from .retention_archive import Spec, keys, keys_of, write


def archive(tmp_path: Path) -> tuple[LocalStorage, list[SessionRef], list[SessionRef]]:
    storage = LocalStorage(tmp_path / "archive")
    old = [write(storage, Spec(f"team-a/train/session_2026-10-0{i}_00-00-00_000000_1", ended_days=40)) for i in (1, 2)]
    young = [write(storage, Spec("team-b/eval/session_2026-12-01_00-00-00_000000_1", ended_days=2)),
             write(storage, Spec("team-b/eval/session_2026-12-05_00-00-00_000000_1", ended_days=None))]  # fmt: skip
    return storage, old, young


def test_a_pass_applies_the_policy_and_takes_the_usage(tmp_path: Path) -> None:
    storage, old, young = archive(tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text('[defaults]\nmax_age = "30d"\n')
    before = keys_of(storage, young)
    maintenance = Maintenance(storage, MaintenanceSettings(interval_s=3600, policy=policy, grace_s=0))
    maintenance.run_once()
    assert maintenance.last_error is None and maintenance.passes == 1
    assert not keys_of(storage, old)  # the grace was 0: marked and deleted in one pass
    assert keys_of(storage, young) == before  # young, and running: untouched
    usage = maintenance.usage
    assert usage.total is not None and usage.total.objects == len(keys(storage))
    assert {row.group: row.sessions for row in usage.by["namespace"]} == {"team-b": 2}


def test_without_a_policy_nothing_is_deleted_and_the_loop_stops(tmp_path: Path) -> None:
    storage, _, _ = archive(tmp_path)
    everything = keys(storage)
    maintenance = Maintenance(storage, MaintenanceSettings(interval_s=0.05, grace_s=0))
    stop = threading.Event()
    thread = threading.Thread(target=maintenance.loop, args=(stop,))
    thread.start()
    while maintenance.passes < 2:
        stop.wait(0.01)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert keys(storage) == everything  # compaction had nothing to merge, retention no policy
    assert maintenance.usage.total is not None and maintenance.usage.total.sessions == 4


def test_the_server_runs_its_passes_and_shows_the_usage_on_metrics(tmp_path: Path) -> None:
    storage, old, _ = archive(tmp_path)
    policy = tmp_path / "policy.toml"
    policy.write_text('[defaults]\nmax_age = "30d"\n')
    maintenance = MaintenanceSettings(interval_s=3600, policy=policy, grace_s=0, first_delay_s=0)
    history = HistoryServer(storage, ServerSettings(cache_dir=tmp_path / "cache", maintenance=maintenance))
    with TestClient(create_app(history)) as client:
        while history.maintenance.passes < 1:  # the first pass runs as the server starts (first_delay_s=0)
            threading.Event().wait(0.05)
        metrics = client.get("/metrics").text
    assert not keys_of(storage, old)
    listed = keys(storage)
    assert f"ray_history_archive_objects {float(len(listed))}" in metrics
    assert 'ray_history_archive_sessions_by_namespace{namespace="team-b"} 2.0' in metrics
    assert "team-a" not in metrics  # deleted by the pass before the listing


def test_serve_refuses_a_bad_policy_before_listening(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[defaults]\nmax_age = "thirty days"\n')
    result = CliRunner().invoke(main, ["serve", "--archive", str(tmp_path / "archive"), "--cache-dir",
                                       str(tmp_path / "cache"), "--policy", str(policy), "--maintenance-interval",
                                       "60"])  # fmt: skip
    assert result.exit_code == 2 and "--policy" in result.output and "max_age" in result.output, result.output
