"""Collectors for tests: in this process (a thread) or as a real `ray-history collect` process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from archive.storage import Storage, open_storage
from collector.config import CollectorConfig
from collector.service import Collector
from ray_history.localray import free_port


def wait_healthy(url: str, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the collector exited with {process.returncode} before it was healthy")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"no collector answered at {url} in {timeout:.0f} s")


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


def collector_command(archive: str, port: int, spool_dir: Path, ray_temp_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "ray_history.cli", "collect", "--archive", archive,
        "--listen", f"127.0.0.1:{port}", "--spool-dir", str(spool_dir), "--ray-temp-dir", str(ray_temp_dir),
        *extra,
    ]  # fmt: skip


def start_collector_process(command: list[str], log_path: Path, env: dict[str, str] | None = None,
                            ) -> subprocess.Popen[bytes]:  # fmt: skip
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )  # fmt: skip


def stop_collector_process(process: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """SIGTERM, as Kubernetes does at pod deletion; the collector must flush and exit on its own."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
