"""`ray-history demo`: a local Ray with the event stream on, the collector, a real workload, the archive."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from archive.storage import Storage, open_storage

from .localray import LocalRay, collector_command, event_stream_env, free_port, terminate, wait_healthy
from .summary import summarise_archive
from .workloads import probe


def _step(message: str) -> None:
    click.echo(click.style("==> ", fg="cyan", bold=True) + message, err=True)


def _start_collector(archive: Path, port: int, scratch: Path, dashboard_url: str) -> subprocess.Popen[bytes]:
    # Short intervals: the demo's cluster lives for a minute, a RayJob's for hours.
    command = collector_command(
        str(archive), port, scratch / "spool", scratch / "ray",
        "--cluster", "demo", "--owner-kind", "RayJob", "--owner-name", "demo-probe", "--label", "team=demo",
        "--seal-interval", "2", "--log-interval", "2", "--metrics-interval", "5", "--dashboard-interval", "5",
        "--dashboard-url", dashboard_url,
    )  # fmt: skip
    with open(scratch / "collector.log", "ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def run_demo(workdir: Path, ray_port: int, serve_port: int | None = 8080) -> int:
    archive = workdir / "ray-history-archive"
    # Ray's socket paths must stay short, so its temp dir sits directly under the system temp dir.
    scratch = Path(tempfile.mkdtemp(prefix="rh-demo-", dir="/tmp"))
    collector_port = free_port()
    ray = LocalRay(
        temp_dir=scratch / "ray", gcs_port=ray_port, dashboard_port=free_port(), metrics_port=free_port(),
        env=event_stream_env(f"http://127.0.0.1:{collector_port}/v1/events"),
    )  # fmt: skip
    _step(f"collector on http://127.0.0.1:{collector_port}/v1/events, archive in {archive}")
    collector = _start_collector(archive, collector_port, scratch, ray.dashboard_url)
    status = 0
    try:
        wait_healthy(f"http://127.0.0.1:{collector_port}", process=collector)
        _step("starting a local Ray head (10-20 s)")
        started = time.monotonic()
        ray.start()
        _step(f"Ray is up in {time.monotonic() - started:.0f} s; dashboard {ray.dashboard_url}")
        submission = f"demo-{time.strftime('%H%M%S')}"
        ray.submit_job(f"{sys.executable} {probe.__file__}", submission, {"owner": "demo", "team": "demo"})
        _step(f"submitted job {submission}: tasks that succeed, fail, retry and crash; actors; a placement group")
        info = ray.wait_job(submission)
        _step(f"job {submission} ended {info.get('status')}")
        _step("running the same workload as a direct driver")
        driver = ray.run_driver(Path(probe.__file__))
        _step(f"driver exited with {driver.returncode}")
    except Exception as exc:
        click.echo(f"demo failed: {exc}\nRay: {ray.log_path}\nCollector: {scratch / 'collector.log'}", err=True)
        status = 1
    finally:
        _step("stopping Ray (about 10 s), then the collector (SIGTERM, as at pod deletion)")
        ray.stop()
        if terminate(collector) != 0:
            click.echo(f"the collector exited with {collector.returncode}; see {scratch / 'collector.log'}", err=True)
            status = 1
    storage = open_storage(str(archive))
    click.echo(summarise_archive(storage))
    if status == 0:
        shutil.rmtree(scratch, ignore_errors=True)
    if status == 0 and serve_port is not None:
        serve_history(storage, workdir / ".ray-history-cache", serve_port)
    return status


def serve_history(storage: Storage, cache_dir: Path, port: int) -> None:
    """Serve the archive's history until Ctrl-C, after saying where to look."""
    import uvicorn

    from historyserver.app import create_app
    from historyserver.server import HistoryServer, ServerSettings

    base = f"http://127.0.0.1:{port}"
    history = HistoryServer(storage, ServerSettings(cache_dir=cache_dir))
    manifests = [info.key for info in storage.list("sessions/") if info.key.endswith("/manifest.json")]
    newest = f"{base}/" + max(manifests, key=lambda key: key.split("/")[3]).removesuffix("/manifest.json")
    _step(f"history server on {base} (Ctrl-C to stop). Open in a browser:")
    for url, what in (
        (newest, "this run: its jobs, what failed most, its nodes"),
        (f"{newest}/tasks?state=FAILED", "its failed tasks: open one for its traceback and what it printed"),
        (f"{base}/sessions", "every session in the archive"),
        (f"{base}/jobs?status=FAILED", "failed jobs across every session"),
        (f"{newest}/timeline", "the timeline of its tasks"),
        (f"{base}/api/v1{newest.removeprefix(base)}", "the same as JSON: every page's URL under /api/v1"),
        (f"{base}/docs", "the whole JSON API, to try out"),
    ):
        click.echo(f"  {url}\n      {what}")
    uvicorn.run(create_app(history), host="127.0.0.1", port=port, log_level="warning")
