"""Collectors for tests: in this process (a thread) or as a real `ray-history collect` process."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from archive.storage import Storage, open_storage
from collector.config import CollectorConfig, PollSettings
from collector.service import Collector
from ray_history.localray import free_port, terminate, wait_healthy


@contextmanager
def collector_thread(tmp_path: Path, storage: Storage | None = None, **settings: Any) -> Iterator[Collector]:
    """A collector serving on a free port in a thread; stopped (and flushed) on exit."""
    config = CollectorConfig(
        archive=str(tmp_path / "archive"),
        listen_port=free_port(),
        ray_temp_dir=tmp_path / "ray",
        spool_dir=tmp_path / "spool",
        seal_interval=0.5,
        tail_interval=0.2,
        node="node-a",
        convert_in_subprocess=False,
        # No dashboard to poll unless a test gives one; the tests scrape and poll when they choose.
        polling=PollSettings(dashboard_url=None, metrics_interval=3600),
    )
    config = replace(config, **settings)
    collector = Collector(config, storage or open_storage(config.archive))
    thread = threading.Thread(target=collector.serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{config.listen_port}"
    wait_healthy(url)
    collector.url = url  # type: ignore[attr-defined]
    try:
        yield collector
    finally:
        collector.request_stop()
        thread.join(timeout=60)


def start_collector_process(command: list[str], log_path: Path, env: dict[str, str] | None = None,
                            ) -> subprocess.Popen[bytes]:  # fmt: skip
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )  # fmt: skip


def stop_collector_process(process: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """SIGTERM, as Kubernetes does at pod deletion; the collector must flush and exit on its own."""
    return terminate(process, timeout)
