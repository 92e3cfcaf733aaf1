"""Benchmark: Ray's own dashboard API on a live 100,000-task job against ours on the same session, dead.

    python -m bench.rayapi --tasks 100000

Starts a real Ray head (its own temp dir, free ports, the event stream pointed at a real `ray-history
collect` with a local archive), runs `ray_history/workloads/burst.py` as a driver (tiny tasks, one in
100 raising), and while Ray lives times its `/api/v0/tasks?limit=100`, the same filtered to FAILED,
`/api/v0/tasks/summarize` and `ray list tasks --limit 10000`. Then Ray is stopped, the collector
SIGTERMed (it flushes), and `ray-history serve` started on the archive: the session is opened once (its
snapshot derived: timed on its own), and the same calls are timed against
`/ray/{namespace}/{cluster}/{session}`, plus `ray list tasks --limit 200000`. Prints medians, what each
answer counted, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ray_history.localray import (
    LocalRay,
    collector_command,
    event_stream_env,
    free_port,
    terminate,
    wait_healthy,
)
from ray_history.workloads import burst

from .table import print_table

NAMESPACE = "bench"
CLUSTER = "rayapi"
RAY = str(Path(sys.executable).with_name("ray"))
HTTP_TIMEOUT = 600.0
AIM_RATIO = 100
FAILED_FILTER = "filter_keys=state&filter_predicates=%3D&filter_values=FAILED"
# What `ray list tasks --limit 10000` asks the dashboard (ray.util.state's StateApiClient, Ray 2.60).
CLI_QUERY = "limit=10000&timeout=30&detail=False&exclude_driver=True"


@dataclass
class Measure:
    """One call's median time and what its answer counted."""

    seconds: float
    runs: list[float]
    rows: int
    total: int | None
    failed: int | None
    note: str = ""
    first: float | None = None  # the warm-up call: what the first caller of a filter waits

    def describe(self) -> str:
        counted = f"{self.rows:,} rows" + (f" of {self.total:,}" if self.total is not None else "")
        failed = f", {self.failed:,} FAILED" if self.failed is not None else ""
        first = f"; its first call {self.first:.3f} s" if self.first is not None else ""
        return f"{self.seconds:.3f} s; {counted}{failed}{self.note}{first}"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as answer:
        return json.loads(answer.read())


def timed(call: Callable[[], Any], repeat: int, warm_up: bool) -> tuple[list[float], Any, float | None]:
    """Seconds of `repeat` calls, the last answer, and the time of one call made first if `warm_up`."""
    first = None
    if warm_up:
        started = time.perf_counter()
        call()
        first = time.perf_counter() - started
    spent, answer = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        answer = call()
        spent.append(time.perf_counter() - started)
    return spent, answer, first


def list_measure(spent: list[float], body: dict[str, Any]) -> Measure:
    result = body["data"]["result"]
    rows = result["result"]
    warnings = body["data"]["result"].get("partial_failure_warning") or body.get("msg") or ""
    note = f" (warning: {warnings[:80]})" if warnings and "dropped" in str(warnings).lower() else ""
    failed = sum(row.get("state") == "FAILED" for row in rows)
    return Measure(statistics.median(spent), spent, len(rows), int(result["total"]), failed, note)


def summary_measure(spent: list[float], body: dict[str, Any]) -> Measure:
    result = body["data"]["result"]
    functions = result["result"]["node_id_to_summary"]["cluster"]["summary"].values()
    counted = sum(sum(entry["state_counts"].values()) for entry in functions)
    failed = sum(entry["state_counts"].get("FAILED", 0) for entry in functions)
    states: dict[str, int] = {}
    for entry in functions:
        for state, count in entry["state_counts"].items():
            states[state] = states.get(state, 0) + count
    note = " (" + ", ".join(f"{state} {count:,}" for state, count in sorted(states.items())) + ")"
    return Measure(statistics.median(spent), spent, counted, int(result["total"]), failed, note)


def ray_list(address: str, limit: int) -> list[dict[str, Any]]:
    done = subprocess.run(
        [RAY, "list", "tasks", "--limit", str(limit), "--address", address, "--format", "json"],
        capture_output=True, text=True, timeout=HTTP_TIMEOUT, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"ray list tasks --address {address}: {done.stderr[-2000:]}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def cli_measure(spent: list[float], rows: list[dict[str, Any]]) -> Measure:
    failed = sum(row.get("state") == "FAILED" for row in rows)
    return Measure(statistics.median(spent), spent, len(rows), None, failed)


def measure_calls(base: str, address: str, repeat: int, warm_up: bool, whole_list: bool) -> dict[str, Measure]:
    """The three calls (four with `whole_list`) against a dashboard at `base`; `address` for `ray list`."""
    found: dict[str, Measure] = {}

    def measure(name: str, call: Callable[[], Any], judge: Callable[[list[float], Any], Measure]) -> None:
        spent, answer, first = timed(call, repeat, warm_up)
        found[name] = replace(judge(spent, answer), first=first)

    measure("GET /api/v0/tasks?limit=100", lambda: get_json(f"{base}/api/v0/tasks?limit=100"), list_measure)
    # What a user asks next: the failed tasks. Ray's GCS applies a state filter itself, before its 10,000 cap.
    measure(
        "GET /api/v0/tasks?state=FAILED&limit=10000",
        lambda: get_json(f"{base}/api/v0/tasks?{FAILED_FILTER}&limit=10000"),
        list_measure,
    )
    measure("GET /api/v0/tasks/summarize", lambda: get_json(f"{base}/api/v0/tasks/summarize"), summary_measure)
    measure(
        "GET /api/v0/tasks?limit=10000 (what ray list asks)",
        lambda: get_json(f"{base}/api/v0/tasks?{CLI_QUERY}"),
        list_measure,
    )
    measure("ray list tasks --limit 10000", lambda: ray_list(address, 10_000), cli_measure)
    if whole_list:
        measure("ray list tasks --limit 200000", lambda: ray_list(address, 200_000), cli_measure)
    return found


def cli_startup(repeat: int) -> float:
    """The `ray` CLI's own start (imports), which every `ray list` pays whatever answers it."""
    spent, _, _ = timed(lambda: subprocess.run([RAY, "list", "--help"], capture_output=True, check=True), repeat, True)
    return statistics.median(spent)


def dropped_metric(metrics_port: int) -> str:
    """Ray's own count of the task events it dropped, as its metrics endpoint gives it now."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as answer:
            text = answer.read().decode()
    except OSError as exc:
        return f"not visible ({exc})"
    samples = [line for line in text.splitlines() if line.startswith("ray_gcs_task_manager_task_events_dropped")]
    if not samples:
        return "not exported"
    values = []
    for line in samples:
        kind = line.split('Type="', 1)[1].split('"', 1)[0] if 'Type="' in line else "?"
        values.append(f"{kind}={float(line.rsplit(' ', 1)[1]):,.0f}")
    return ", ".join(values)


def archived_events(archive: Path) -> int:
    """Rows in the archive's event parts (every Ray event the collector received, once)."""
    return sum(pq.read_metadata(path).num_rows for path in (archive / "events").rglob("*.parquet"))


def wait_listed(url: str, session: str, timeout: float = 60.0) -> None:
    """Until the server's catalog lists the session: the open timed next must not wait for a refresh."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(row["session"] == session for row in get_json(url)["items"]):
                return
        except urllib.error.HTTPError as exc:
            if exc.code != 503:  # 503: the server is still reading its catalog
                raise
        time.sleep(0.5)
    raise TimeoutError(f"the server did not list {session} in {timeout:.0f} s")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 120.0) -> int:
    """The process's exit code; one that had to be killed reports it (the benchmark still prints)."""
    try:
        return terminate(process, timeout)
    except subprocess.TimeoutExpired:
        return process.returncode


def run(tasks: int, repeat: int, workdir: Path, window: int, ray_env: dict[str, str]) -> list[tuple[str, str]]:
    phases: dict[str, float] = {}
    archive = workdir / "archive"
    # Ray's socket paths must stay short: its temp dir sits directly under /tmp whatever the workdir.
    scratch = Path(tempfile.mkdtemp(prefix="rh-bench-ray-", dir="/tmp"))
    collector_port = free_port()
    ray = LocalRay(
        temp_dir=scratch / "ray", gcs_port=free_port(), dashboard_port=free_port(), metrics_port=free_port(),
        env={**event_stream_env(f"http://127.0.0.1:{collector_port}/v1/events"), **ray_env},
    )  # fmt: skip
    command = collector_command(
        str(archive), collector_port, scratch / "spool", scratch / "ray", "--namespace", NAMESPACE,
        "--cluster", CLUSTER, "--metrics-interval", "5", "--dashboard-url", ray.dashboard_url,
        "--shutdown-deadline", "600",
    )  # fmt: skip
    quiet = {**os.environ, "RAY_HISTORY_LOG_LEVEL": "WARNING"}
    with open(workdir / "collector.log", "ab") as log:
        collector = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=quiet, start_new_session=True)  # fmt: skip
    live: dict[str, Measure] = {}
    try:
        wait_healthy(f"http://127.0.0.1:{collector_port}", process=collector)
        started = time.perf_counter()
        ray.start()
        phases["Ray start"] = time.perf_counter() - started
        print(f"Ray up in {phases['Ray start']:.0f} s; running {tasks:,} tasks...", file=sys.stderr)
        started = time.perf_counter()
        driver = subprocess.run(
            [sys.executable, burst.__file__, "--tasks", str(tasks), "--window", str(window)],
            env={**os.environ, **ray.env, "RAY_ADDRESS": ray.address}, capture_output=True, text=True,
            timeout=3600, check=False,
        )  # fmt: skip
        phases["workload (driver)"] = time.perf_counter() - started
        if driver.returncode != 0:
            raise RuntimeError(f"the driver failed:\n{driver.stderr[-3000:]}")
        outcome = json.loads(driver.stdout.strip().splitlines()[-1])
        print(f"driver: {outcome}; timing Ray's dashboard...", file=sys.stderr)
        # The GCS takes task events from the workers every second or so: let the last ones land.
        time.sleep(5)
        started = time.perf_counter()
        live = measure_calls(ray.dashboard_url, ray.dashboard_url, repeat, warm_up=False, whole_list=False)
        phases["Ray live calls"] = time.perf_counter() - started
        dropped = dropped_metric(ray.metrics_port)
        session = (scratch / "ray" / "session_latest").resolve().name
    finally:
        started = time.perf_counter()
        ray.stop()
        phases["Ray stop"] = time.perf_counter() - started
        started = time.perf_counter()
        collector_exit = stop_process(collector, timeout=900)
        phases["collector flush after SIGTERM"] = time.perf_counter() - started
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"Ray stopped; collector exited {collector_exit}; serving the archive...", file=sys.stderr)

    events = archived_events(archive)
    serve_port = free_port()
    serve = [
        sys.executable, "-m", "ray_history.cli", "serve", "--archive", str(archive),
        "--listen", f"127.0.0.1:{serve_port}", "--cache-dir", str(workdir / "cache"),
        # The background job index would derive this very snapshot beside the timed first open.
        "--no-index-jobs",
    ]  # fmt: skip
    shutil.rmtree(workdir / "cache", ignore_errors=True)
    with open(workdir / "serve.log", "ab") as log:
        server = subprocess.Popen(serve, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=quiet,
                                  start_new_session=True)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{serve_port}"
        wait_healthy(base, timeout=60, process=server)
        wait_listed(f"{base}/api/v1/sessions?namespace={NAMESPACE}&cluster={CLUSTER}", session)
        started = time.perf_counter()
        opened = get_json(f"{base}/api/v1/sessions/{NAMESPACE}/{CLUSTER}/{session}")
        phases["first open (snapshot derived)"] = time.perf_counter() - started
        prefix = f"{base}/ray/{NAMESPACE}/{CLUSTER}/{session}"
        started = time.perf_counter()
        ours = measure_calls(prefix, prefix, repeat, warm_up=True, whole_list=True)
        phases["our calls"] = time.perf_counter() - started
        startup = cli_startup(repeat)
    finally:
        stop_process(server)

    incomplete = opened["summary"]["incomplete"]
    settings = ", ".join(f"{name}={value}" for name, value in ray_env.items()) or "none (Ray's defaults)"
    rows: list[tuple[str, str]] = [
        ("Ray variables set beyond the event stream's", settings),
        ("submission window (tasks submitted before waiting)", f"{window:,}"),
        ("tasks submitted / FAILED the driver saw", f"{outcome['tasks']:,} / {outcome['failed']:,} "
         f"({outcome['tasks_per_second']:,.0f} tasks/s, {outcome['seconds']:.0f} s)"),
        ("events in the archive", f"{events:,}"),
        ("Ray's ray_gcs_task_manager_task_events_dropped", dropped),
        ("our summary.incomplete", ", ".join(f"{key} {value}" for key, value in incomplete.items())),
        ("first open on our server (snapshot derived)", f"{phases['first open (snapshot derived)']:.1f} s"),
    ]  # fmt: skip
    for call, ours_measure in ours.items():
        theirs = live.get(call)
        rows.append((f"{call}: Ray live", theirs.describe() if theirs else "(not asked: Ray caps lists at 10,000)"))
        rows.append((f"{call}: ours", ours_measure.describe()))
        if theirs:
            ratio = theirs.seconds / ours_measure.seconds
            verdict = "met" if ratio >= AIM_RATIO else "MISSED"
            rows.append((f"{call}: ratio", f"ours {ratio:,.1f}x faster (aim >= {AIM_RATIO}x: {verdict})"))
    rows.append(("`ray list --help` (the CLI's own start)", f"{startup:.2f} s, in every `ray list` above"))
    whole = ours["ray list tasks --limit 200000"]
    # Complete and true: every attempt listed, and no failure the driver did not see. A failure whose end Ray
    # never sent (its buffers overflowed) is listed with its last state, its end unknown, not as FAILED.
    complete = whole.rows >= outcome["tasks"] and (whole.failed or 0) <= outcome["failed"]
    unreported = outcome["failed"] - (whole.failed or 0)
    rows.append(("ours complete and true: every attempt, no FAILED the driver did not see",
                 f"{whole.rows:,} listed, {whole.failed:,} FAILED; {unreported:,} of the driver's failures never "
                 f"reported by Ray ({'met' if complete else 'MISSED'})"))  # fmt: skip
    rows.append(("aim", f"ours >= {AIM_RATIO}x faster than Ray live, and complete"))
    rows += [(f"phase: {name}", f"{seconds:.1f} s") for name, seconds in phases.items()]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per measure (the median is the figure)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the archive and logs here (default: temp)")
    parser.add_argument(
        "--window",
        type=int,
        default=burst.WINDOW,
        help="tasks the driver submits before waiting for them (a larger window, a harder burst)",
    )
    parser.add_argument(
        "--ray-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable for Ray's processes, e.g. RAY_ray_event_recorder_max_queued_events=1000000",
    )
    args = parser.parse_args()
    ray_env = dict(item.split("=", 1) for item in args.ray_env)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rh-bench-rayapi-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        rows = run(args.tasks, args.repeat, workdir, args.window, ray_env)
        print_table(f"Ray's dashboard API: live Ray against our prefix, {args.tasks:,} tasks", rows)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
