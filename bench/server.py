"""Benchmark: the history server on a 1,000,000-task session and a 10,000-session catalog.

    python -m bench.server --tasks 1000000 --sessions 10000

Writes a synthetic archive shaped like Ray 2.60's (bench.archive_synth) into a local folder, starts
the server's parts in this process, and measures what a user waits for: deriving the session's
snapshot once, then the tasks page (filtered and sorted, and at a deep offset), the summary, one
task, and the sessions list, each through the JSON API (FastAPI's in-process client, so HTTP
parsing and JSON encoding count; the network does not). Prints medians and p95 against the aims.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from archive.layout import SessionRef
from archive.storage import Storage, open_storage
from historyserver.app import create_app
from historyserver.server import HistoryServer, ServerSettings

from .archive_synth import write_catalog, write_session
from .table import print_table

REF = SessionRef("ml-team", "train-1m", "session_2026-11-20_08-00-00_000000_1")
AIMS_MS = {"build": 15_000.0, "tasks page": 50.0, "summary": 200.0, "sessions list": 50.0}


def timed(call: Callable[[], object], times: int) -> list[float]:
    """Milliseconds of each of `times` calls, after one warm-up call."""
    call()
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def measure_row(name: str, values: list[float], aim: float | None) -> tuple[str, str]:
    verdict = "" if aim is None else f"  (aim p95 < {aim:.0f} ms: {'met' if p95(values) < aim else 'MISSED'})"
    return name, f"p50 {statistics.median(values):7.1f} ms, p95 {p95(values):7.1f} ms{verdict}"


def get_ok(client: TestClient, path: str, **params: object) -> Callable[[], object]:
    def call() -> object:
        answer = client.get(path, params=params)
        answer.raise_for_status()
        return answer.json()

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30, help="requests per measure")
    parser.add_argument("--builds", type=int, default=3, help="snapshot builds (the median is the figure)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the archive here, and use the one already there (default: a temp dir)",
    )
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rh-bench-server-"))
    storage = open_storage(str(workdir / "archive"))
    try:
        written: list[tuple[str, str]] = []
        if not any(True for _ in storage.list(f"sessions/{REF.path}/")):
            print(f"writing a {args.tasks:,}-task session and {args.sessions:,} catalog sessions into {workdir}...")
            started = time.perf_counter()
            stats = write_session(storage, REF, args.tasks, seed=1, progress=lambda line: print(f"  {line}"))
            write_catalog(storage, args.sessions, seed=2)
            summary = f"{stats.attempts:,} attempts, {stats.events.rows:,} event rows"
            written.append(("archive written", f"{time.perf_counter() - started:.0f} s: {summary}"))
        rows = written + measure_builds(storage, workdir / "cache", args.builds)
        rows += run(storage, workdir / "cache", args.repeat)
        print_table(f"history server: {args.tasks:,} tasks, {args.sessions:,} sessions", rows)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def measure_builds(storage: Storage, cache_dir: Path, builds: int) -> list[tuple[str, str]]:
    """Open the session on `builds` fresh servers with nothing derived (no cache, nothing written back):
    how long the opener waits, and when the snapshot's files are written. Runs here vary by a quarter."""
    opened, written = [], []
    for _ in range(builds):
        shutil.rmtree(cache_dir, ignore_errors=True)
        for info in list(storage.list(f"snapshots/{REF.path}/")):
            storage.delete(info.key)
        history = HistoryServer(storage, ServerSettings(cache_dir=cache_dir, index_jobs=False))
        history.catalog.refresh()
        started = time.perf_counter()
        attempts = history.open(REF.namespace, REF.cluster, REF.session).snapshot.manifest.tables["tasks"]
        opened.append(time.perf_counter() - started)
        history.sessions.snapshots.wait_written()
        written.append(time.perf_counter() - started)
    build = statistics.median(opened)
    verdict = "met" if build * 1000 < AIMS_MS["build"] else "MISSED"
    runs = ", ".join(f"{seconds:.1f}" for seconds in opened)
    return [
        (f"snapshot build (median of {builds})", f"{build:.1f} s for {attempts:,} task attempts "
         f"(aim < {AIMS_MS['build'] / 1000:.0f} s: {verdict}); runs {runs} s"),
        ("  its files written (cache and archive)", f"{statistics.median(written):.1f} s after the open began"),
    ]  # fmt: skip


def run(storage: Storage, cache_dir: Path, repeat: int) -> list[tuple[str, str]]:
    """The pages, on a server whose cache holds the snapshot the last build wrote."""
    # The job index's background pass is measured on its own below, not beside the pages.
    history = HistoryServer(storage, ServerSettings(cache_dir=cache_dir, refresh_interval=3600, index_jobs=False))
    rows: list[tuple[str, str]] = []
    with TestClient(create_app(history)) as client:
        base = f"/api/v1/sessions/{REF.path}"
        client.get(base).raise_for_status()
        tasks_total = client.get(f"{base}/tasks", params={"limit": 1}).json()["total"]
        shutil.rmtree(cache_dir.with_name("cache-2"), ignore_errors=True)
        second = HistoryServer(storage, ServerSettings(cache_dir=cache_dir.with_name("cache-2"),
                                                       refresh_interval=3600, index_jobs=False))  # fmt: skip
        second.catalog.refresh()
        started = time.perf_counter()
        second.open(REF.namespace, REF.cluster, REF.session)
        rows.append(("open on a second server (written snapshot)", f"{time.perf_counter() - started:.1f} s, "
                     f"{second.sessions.snapshots.derived} replays"))  # fmt: skip
        summary = client.get(f"{base}/tasks/summary").json()["items"]
        function = summary[0]["func_or_class_name"]
        some_task = client.get(f"{base}/tasks", params={"state": "FAILED", "limit": 1}).json()["items"][0]["task_id"]
        pages = {
            "tasks: FAILED, by -duration_ms": get_ok(client, f"{base}/tasks", state="FAILED", sort="-duration_ms"),
            "tasks: one function, by -duration_ms": get_ok(client, f"{base}/tasks", func_or_class_name=function,
                                                           sort="-duration_ms"),
            "tasks: by -duration_ms, offset 500,000": get_ok(client, f"{base}/tasks", sort="-duration_ms",
                                                              offset=min(500_000, max(0, tasks_total - 100))),
            "tasks: by start, offset 900,000": get_ok(client, f"{base}/tasks", sort="start_time_ms",
                                                       offset=min(900_000, max(0, tasks_total - 100))),
        }  # fmt: skip
        for name, call in pages.items():
            rows.append(measure_row(name, timed(call, repeat), AIMS_MS["tasks page"]))
        rows.append(measure_row("tasks summary (per function)", timed(get_ok(client, f"{base}/tasks/summary"), repeat),
                                AIMS_MS["summary"]))  # fmt: skip
        rows.append(measure_row("session summary", timed(get_ok(client, base), repeat), AIMS_MS["summary"]))
        rows.append(measure_row("one task, every attempt", timed(get_ok(client, f"{base}/tasks/{some_task}"), repeat),
                                AIMS_MS["tasks page"]))  # fmt: skip
        lists = {
            "sessions: newest 100": get_ok(client, "/api/v1/sessions"),
            "sessions: one namespace, closed": get_ok(client, "/api/v1/sessions", namespace=REF.namespace,
                                                      status="closed"),
            "sessions: a label, by -duration_ms": get_ok(client, "/api/v1/sessions", label="team=vision",
                                                         sort="-duration_ms"),
        }  # fmt: skip
        for name, call in lists.items():
            rows.append(measure_row(name, timed(call, repeat), AIMS_MS["sessions list"]))
        started = time.perf_counter()
        history.open(REF.namespace, REF.cluster, REF.session).cursor("task_profile_events")
        spans = history.open(REF.namespace, REF.cluster, REF.session).snapshot.manifest.tables["task_profile_events"]
        rows.append(("timeline spans, derived on first use",
                     f"{time.perf_counter() - started:.1f} s for {spans:,} spans"))  # fmt: skip
        started = time.perf_counter()
        indexed = history.index_ended_sessions()
        rows.append(("job index: one pass over the ended sessions",
                     f"{time.perf_counter() - started:.1f} s, {indexed:,} sessions"))  # fmt: skip
        rows.append(
            measure_row(
                "jobs across sessions: FAILED, newest first",
                timed(get_ok(client, "/api/v1/jobs", status="FAILED"), repeat),
                AIMS_MS["tasks page"],
            )
        )
    return rows


if __name__ == "__main__":
    main()
