"""A local Ray head for the demo and the tests, started the way a RayCluster pod would be.

Ray runs in its own temp dir and process group, on free ports outside Ray's worker port range,
with the event stream pointed at the collector. It is stopped by its process group, never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT = 120.0
TERMINAL_JOB_STATES = {"SUCCEEDED", "FAILED", "STOPPED"}


_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port from the ephemeral range, which lies above Ray's worker ports (10002-19999).

    The kernel may offer a port again once its socket is closed, and Ray refuses two components on
    one port, so a port is never handed out twice by this process.
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def event_stream_env(collector_url: str) -> dict[str, str]:
    """The variables that make Ray 2.60 POST its events to a collector and write submission-job files."""
    return {
        "RAY_enable_ray_event": "1",
        "RAY_enable_core_worker_ray_event_to_aggregator": "1",
        "RAY_DASHBOARD_AGGREGATOR_AGENT_EVENTS_EXPORT_ADDR": collector_url,
        "RAY_DASHBOARD_AGGREGATOR_AGENT_EXPOSABLE_EVENT_TYPES": "ALL",
        "RAY_enable_export_api_write_config": "EXPORT_SUBMISSION_JOB",
    }


def collector_command(archive: str, port: int, spool_dir: Path, ray_temp_dir: Path, *extra: str) -> list[str]:
    """`ray-history collect` as the demo, the tests and the benchmark run it: this Python, loopback."""
    return [
        sys.executable, "-m", "ray_history.cli", "collect", "--archive", archive,
        "--listen", f"127.0.0.1:{port}", "--spool-dir", str(spool_dir), "--ray-temp-dir", str(ray_temp_dir),
        *extra,
    ]  # fmt: skip


def terminate(process: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """SIGTERM one process we started (as Kubernetes does at pod deletion) and wait for it to leave on its
    own; past `timeout`, SIGKILL its process group and raise subprocess.TimeoutExpired (it did not stop)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise


def wait_until_answers(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until `url` answers 200; fail early if the process meant to serve it has died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"nothing answered at {url} in {timeout:.0f} s")


def wait_healthy(url: str, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until a collector or server at `url` answers `/healthz`."""
    wait_until_answers(f"{url}/healthz", timeout, process)


def _ray_executable() -> str:
    beside_python = Path(sys.executable).with_name("ray")
    found = str(beside_python) if beside_python.exists() else shutil.which("ray")
    if not found:
        raise RuntimeError("the `ray` command is not installed: pip install 'ray-history[ray]'")
    return found


@dataclass
class LocalRay:
    temp_dir: Path
    gcs_port: int
    dashboard_port: int
    metrics_port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _log: object = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self, num_cpus: int = 4) -> None:
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.temp_dir.parent / f"{self.temp_dir.name}-ray-start.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as Ray
        self._log = log
        command = [
            _ray_executable(), "start", "--head", "--block", "--disable-usage-stats",
            f"--temp-dir={self.temp_dir}", f"--num-cpus={num_cpus}",
            f"--port={self.gcs_port}", "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
            f"--metrics-export-port={self.metrics_port}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self._wait_ready()

    def _wait_ready(self) -> None:
        try:
            # The Jobs API answers last: when it does, jobs can be submitted.
            wait_until_answers(f"{self.dashboard_url}/api/jobs/", READY_TIMEOUT, self.process)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"Ray did not become ready: {exc}; see {self.log_path}") from exc

    def submit_job(self, entrypoint: str, submission_id: str, metadata: dict[str, str],
                   working_dir: Path | None = None) -> str:  # fmt: skip
        body: dict[str, object] = {
            "entrypoint": entrypoint,
            "submission_id": submission_id,
            "metadata": metadata,
        }
        if working_dir is not None:
            body["runtime_env"] = {"env_vars": {"PYTHONPATH": str(working_dir)}}
        request = urllib.request.Request(
            f"{self.dashboard_url}/api/jobs/", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as answer:
            return str(json.loads(answer.read())["submission_id"])

    def job_info(self, submission_id: str) -> dict[str, object]:
        with urllib.request.urlopen(f"{self.dashboard_url}/api/jobs/{submission_id}", timeout=10) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]

    def wait_job(self, submission_id: str, timeout: float = 300.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.job_info(submission_id)
            if info.get("status") in TERMINAL_JOB_STATES:
                return info
            time.sleep(1)
        raise TimeoutError(f"job {submission_id} did not finish in {timeout:.0f} s")

    def run_driver(self, script: Path, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run a script as a direct driver (a DRIVER job, not a submission)."""
        return subprocess.run(
            [sys.executable, str(script)], env={**os.environ, **self.env, "RAY_ADDRESS": self.address},
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def stop(self, timeout: float = 60.0) -> None:
        """End Ray as `ray stop` would, but only this Ray: SIGTERM its process group, then SIGKILL."""
        if self.process is None:
            return
        try:
            pgid = os.getpgid(self.process.pid)
        except ProcessLookupError:
            pgid = None
        if pgid is not None:
            _signal_group(pgid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
            # Raylet, GCS and workers share the group; whatever survived the shutdown goes now.
            deadline = time.monotonic() + 15
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.5)
            _signal_group(pgid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def new_local_ray(temp_dir: Path, collector_url: str) -> LocalRay:
    return LocalRay(
        temp_dir=temp_dir, gcs_port=free_port(), dashboard_port=free_port(), metrics_port=free_port(),
        env=event_stream_env(collector_url),
    )  # fmt: skip
