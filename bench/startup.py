"""Benchmark: how soon `ray-history serve` answers, and is ready, on a catalog of N sessions (issue 14).

    python -m bench.startup                                    # 2,000 sessions, SeaweedFS and a local folder
    python -m bench.startup --sessions 100000 --workdir DIR    # written once into DIR, reused by later runs

Writes N sessions' documents (bench.archive_synth.write_catalog: manifest, node markers, closed.json) into a
real SeaweedFS (tests.objectstores) and into a local folder, then starts `ray-history serve` on each as an
operator does (a process of its own, an empty cache) and measures from the spawn: when the port answers
/healthz, when /readyz says ready (the catalog's first load done), and the store requests that took, counted
by the server's own WatchedStorage (ray_history_server_store_calls on /metrics); then when the job index has
every ended session, and its requests. Then twice more (issue 14's persisted catalog): a restart on the same
cache (the catalog's file), and a new replica with an empty cache starting from the archive's index objects
(catalog/{namespace}.parquet, which the first start wrote); on the restart, the store requests of an idle
refresh and the p95 of the sessions list and the job search. Last, in this process on a copy of the restart's
catalog file, what a refresh costs (store requests: HTTP requests on S3, calls on a folder; and time) as the
change journal makes it when nothing changed, and as a full listing of sessions/ does. At 100,000 sessions
(440,000 documents) writing them into SeaweedFS takes a quarter of an hour on two cores and the server's first
load about as long: --workdir keeps the archives for the next run, and --idle-only measures the refreshes
alone (the catalog loaded in this process, no server started).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from archive import layout
from archive.storage import S3Options, Storage, open_storage
from archive.storage.s3 import S3Storage
from historyserver.catalog import Catalog
from historyserver.starting import REASON as STARTING
from maintenance.counting import CountingStorage
from ray_history.localray import free_port, terminate

from .archive_synth import write_catalog
from .table import print_table

BUCKET = "bench-startup"
TIMEOUT_S = 3600.0


def serve_command(archive: str, port: int, cache_dir: Path, *extra: str) -> list[str]:
    """`ray-history serve` as an operator runs it: this Python, loopback, its own cache."""
    return [
        sys.executable, "-m", "ray_history.cli", "serve", "--archive", archive,
        "--listen", f"127.0.0.1:{port}", "--cache-dir", str(cache_dir), *extra,
    ]  # fmt: skip


@contextmanager
def serving(command: list[str], log_path: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """The server as a process of its own group, its output in `log_path`; SIGTERM at the end."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **(env or {})}, start_new_session=True)  # fmt: skip
    try:
        yield process
    finally:
        terminate(process, timeout=30)


def answer(url: str, timeout: float = 5.0) -> tuple[int, Any] | None:
    """(status, JSON body) of a GET, or None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, msgspec.json.decode(response.read())
    except urllib.error.HTTPError as error:
        return error.code, msgspec.json.decode(error.read())
    except OSError:
        return None


def store_calls(base: str) -> Counter[str]:
    """The server's calls to the store so far, by method (every kind and outcome)."""
    calls: Counter[str] = Counter()
    for (method, _kind), count in store_calls_by_kind(base).items():
        calls[method] += count
    return calls


def store_calls_by_kind(base: str) -> Counter[tuple[str, str]]:
    """The server's calls to the store so far, by (method, kind of key)."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text = response.read().decode()
    calls: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name == "ray_history_server_store_calls":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    calls[(sample.labels["method"], sample.labels["kind"])] += int(sample.value)
    return calls


IDLE_WINDOW_S = 8.0
LATENCY_REQUESTS = 200


def p95_ms(url: str, requests: int = LATENCY_REQUESTS) -> float:
    """The 95th percentile of a GET's time over `requests` in a row, in ms (after one to warm up)."""
    answer(url)
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        got = answer(url)
        times.append((time.perf_counter() - started) * 1000)
        if got is None or got[0] != 200:
            raise RuntimeError(f"{url} answered {got}")
    times.sort()
    return times[math.ceil(0.95 * len(times)) - 1]


def idle_and_latency(base: str) -> dict[str, str]:
    """Once the server has nothing new to read: what its refreshes cost (store calls per refresh, each refresh
    listing the change journal once), and the p95 of the sessions list and the job search."""
    before = store_calls_by_kind(base)
    time.sleep(IDLE_WINDOW_S)
    spent = store_calls_by_kind(base) - before
    refreshes = spent.get(("list", "changes"), 0)
    spent_text = ", ".join(f"{method} {kind} {n}" for (method, kind), n in sorted(spent.items()))
    per_refresh = "no refresh in the window"
    if refreshes:
        per_refresh = (f"{sum(spent.values()) / refreshes:.1f} store calls per refresh over {refreshes} refreshes "
                       f"({spent_text})")  # fmt: skip
    return {
        "idle refresh": per_refresh,
        "sessions list p95": f"{p95_ms(f'{base}/api/v1/sessions?limit=100'):.1f} ms (limit 100, newest first); "
        f"{p95_ms(f'{base}/api/v1/sessions?status=closed&text=team&limit=100'):.1f} ms (status and text filter)",
        "job search p95": f"{p95_ms(f'{base}/api/v1/jobs?status=FAILED&limit=100'):.1f} ms (status FAILED, limit 100)",
    }


def gauge(base: str, name: str) -> float:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise LookupError(f"no {name} in /metrics")


@dataclass(frozen=True)
class Startup:
    port_s: float  # spawn to the first /healthz 200 (the port bound by serve, before its imports)
    app_s: float  # spawn to the first answer of the server's own app (not the starting port's)
    ready_s: float  # spawn to the first /readyz 200
    load_s: float  # the first load as the server timed it
    while_loading: str  # a /readyz reason seen during the load, with its progress
    calls: Counter[str]  # store calls until ready
    index_s: float | None  # spawn to every ended session in the job index
    index_calls: Counter[str]
    extra: dict[str, str]  # what `after` measured


def measure(
    command: list[str], log_path: Path, env: dict[str, str], after: Callable[[str], dict[str, str]] | None = None
) -> Startup:
    started = time.perf_counter()
    with serving(command, log_path, env) as process:
        base = f"http://{command[command.index('--listen') + 1]}"
        deadline = started + TIMEOUT_S
        while answer(f"{base}/healthz", timeout=1) is None:
            if process.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"the server did not answer; its log: {log_path}")
            time.sleep(0.01)
        port_s = time.perf_counter() - started
        while_loading, nearest_half, app_s = "", 1.0, None
        while True:
            got = answer(f"{base}/readyz")
            if app_s is None and got is not None and got[1].get("reason") != STARTING:
                app_s = time.perf_counter() - started
            if got is not None and got[0] == 200:
                ready_s = time.perf_counter() - started
                ready = got[1]
                break
            loading = got[1]["catalog"] if got is not None else {}
            if loading.get("documents_listed"):  # the answer nearest half-way shows the progress best
                distance = abs(loading["documents_read"] / loading["documents_listed"] - 0.5)
                if distance < nearest_half:
                    while_loading, nearest_half = got[1]["reason"], distance  # type: ignore[index]
            if process.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"the server never got ready; its log: {log_path}")
            time.sleep(0.05)
        # The load's own count: the job index starts the moment it is done, and its calls are measured apart.
        calls = Counter(ready["catalog"]["store_calls"])
        # The job index takes the ended sessions (closed, or silent past the heartbeat timeout): all but the running.
        running = answer(f"{base}/api/v1/sessions?status=running&limit=1")
        ended = ready["catalog"]["sessions"] - (running[1]["total"] if running else 0)
        index_s = None
        while time.perf_counter() < deadline and process.poll() is None:
            if gauge(base, "ray_history_server_jobs_indexed_sessions") >= ended:
                index_s = time.perf_counter() - started
                break
            time.sleep(0.2)
        index_calls = store_calls(base) - calls
        extra = after(base) if after is not None else {}
    assert app_s is not None
    return Startup(port_s, app_s, ready_s, ready["catalog"]["seconds"], while_loading, calls, index_s, index_calls,
                   extra)


def rows(name: str, sessions: int, run: Startup) -> list[tuple[str, str]]:
    def calls(counted: Counter[str]) -> str:
        return f"{sum(counted.values()):,} ({', '.join(f'{m} {n:,}' for m, n in sorted(counted.items()))})"

    index = f"{run.index_s:.1f} s" if run.index_s is not None else "not within the time limit"
    rate = f"{sessions / run.load_s:,.0f} sessions/s" if run.load_s > 0 else "served from the catalog's file"
    return [
        (f"{name}: port answers /healthz", f"{run.port_s:.2f} s after the spawn; the server's own app "
         f"{run.app_s:.2f} s"),
        (f"{name}: /readyz 200 (catalog loaded)", f"{run.ready_s:.1f} s after the spawn; the load {run.load_s:.1f} s, "
         f"{rate}"),
        (f"{name}: store requests until ready", calls(run.calls)),
        (f"{name}: /readyz while loading", run.while_loading or "(loaded before a poll saw progress)"),
        (f"{name}: job index has every ended session", f"{index} after the spawn, {calls(run.index_calls)}"),
        *((f"{name}: {what}", value) for what, value in run.extra.items()),
    ]  # fmt: skip


REFRESHES = 5


def refresh_costs(name: str, storage: Storage, catalog_file: Path) -> list[tuple[str, str]]:
    """In this process, on a copy of a catalog file: a refresh when nothing changed, from the change journal and
    as a full listing of sessions/; store requests (HTTP on S3, calls on a folder) and time, medians of 5."""
    copy = catalog_file.with_name("refresh-costs.duckdb")
    for suffix in ("", ".wal"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
        if Path(f"{catalog_file}{suffix}").exists():
            shutil.copy(f"{catalog_file}{suffix}", f"{copy}{suffix}")
    counting = CountingStorage(storage)
    table = []
    for what, interval in (("idle refresh from the change journal", 3600.0), ("a full listing's refresh", 0.0)):
        with Catalog(counting, copy, full_refresh_interval_s=interval) as catalog:
            catalog.refresh()  # whatever changed since the file was written
            spent, seconds, stats = [], [], None
            for _ in range(REFRESHES):
                counting.reset()
                stats = catalog.refresh()
                seconds.append(stats.seconds)
                spent.append(counting.http_requests if counting.http else sum(counting.calls.values()))
            assert stats is not None
            unit = "HTTP requests" if counting.http else "store calls"
            detail = (f"{stats.changes_listed} new markers" if not stats.full_listing
                      else f"{stats.documents_listed:,} documents listed")  # fmt: skip
            ms = statistics.median(seconds) * 1000
            table.append((f"{name}: {what}", f"{statistics.median(spent):.0f} {unit}, {ms:,.0f} ms ({detail}; "
                          f"median of {REFRESHES})"))  # fmt: skip
    for suffix in ("", ".wal"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    return table


def idle_only(name: str, storage: Storage, workdir: Path, sessions: int) -> list[tuple[str, str]]:
    """The catalog loaded in this process (a cold first refresh into a file), then refresh_costs on it."""
    tag = name.split()[0].lower()
    catalog_file = workdir / f"idle-{tag}" / "catalog.duckdb"
    shutil.rmtree(catalog_file.parent, ignore_errors=True)
    catalog_file.parent.mkdir(parents=True)
    with Catalog(storage, catalog_file, full_refresh_interval_s=3600.0) as catalog:
        stats = catalog.refresh()
    table = [(f"{name}: first load in this process", f"{stats.seconds:.1f} s, {stats.documents_read:,} documents "
              f"of {sessions:,} sessions")]  # fmt: skip
    return table + refresh_costs(name, storage, catalog_file)


def three_starts(name: str, storage: Storage, command: Callable[[Path, str], list[str]], workdir: Path, sessions: int,
                 env: dict[str, str], again: bool = False) -> list[tuple[str, str]]:  # fmt: skip
    """A cold start (no cache, no index objects), a restart on its cache, a new replica from the index objects;
    `again`: the cold start's cache and index objects of an earlier run in the same workdir, not a cold start."""
    tag = name.split()[0].lower()
    cache = workdir / f"cache-{tag}"
    documents = sum(1 for _ in storage.list("sessions/"))
    table = [(f"{name}: session documents", f"{documents:,} ({math.ceil(documents / 1000)} LIST pages on S3)")]
    if not (again and (cache / "catalog.duckdb").exists() and any(storage.list(layout.CATALOG_INDEX_PREFIX))):
        for info in list(storage.list(layout.CATALOG_INDEX_PREFIX)):
            storage.delete(info.key)
        shutil.rmtree(cache, ignore_errors=True)
        table += rows(f"{name}, cold", sessions, measure(command(cache, "10"), workdir / f"serve-{tag}.log", env))
    index = [info for info in storage.list(layout.CATALOG_INDEX_PREFIX) if layout.parse_catalog_index_key(info.key)]
    table.append((f"{name}: index objects the cold start wrote",
                  f"{len(index)}, {sum(info.size for info in index) / 1e6:.2f} MB (and their state)"))  # fmt: skip
    restart = measure(command(cache, "1"), workdir / f"serve-{tag}.log", env, idle_and_latency)
    table += rows(f"{name}, restart on its cache", sessions, restart)
    table += refresh_costs(name, storage, cache / "catalog.duckdb")
    replica = workdir / f"cache-{tag}-replica"
    shutil.rmtree(replica, ignore_errors=True)
    table += rows(f"{name}, new replica from the index", sessions,
                  measure(command(replica, "10"), workdir / f"serve-{tag}.log", env))  # fmt: skip
    return table


def ensure_catalog(storage: Storage, sessions: int, marker: Path) -> str:
    """The catalog written once per folder (the marker says it is whole); what writing it took."""
    if marker.exists():
        return f"{sessions:,} sessions already written"
    stats = write_catalog(storage, sessions, seed=14, progress=lambda line: print(f"  {line}", file=sys.stderr))
    marker.write_text(f"{stats.sessions} sessions, {stats.documents} documents\n")
    return f"{stats.sessions:,} sessions, {stats.documents:,} documents in {stats.seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=2000, help="sessions in the catalog (100000 works)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the archives here, and reuse them")
    parser.add_argument("--only", choices=["seaweedfs", "local"], default=None, help="one store only")
    parser.add_argument("--again", action="store_true", help="no cold start: the restart and the new replica on "
                        "the cache and index objects an earlier run left in --workdir")  # fmt: skip
    parser.add_argument("--idle-only", action="store_true", help="no server: load the catalog here, then measure "
                        "the refreshes alone")  # fmt: skip
    args = parser.parse_args()

    from tests.objectstores import seaweedfs_server

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rh-bench-startup-"))
    workdir.mkdir(parents=True, exist_ok=True)
    table: list[tuple[str, str]] = []
    try:
        if args.only in (None, "local"):
            storage = open_storage(str(workdir / "archive"))
            table.append(("local folder: catalog", ensure_catalog(storage, args.sessions, workdir / "local.written")))
            archive = str(workdir / "archive")

            def local(cache: Path, interval: str) -> list[str]:
                return serve_command(archive, free_port(), cache, "--refresh-interval", interval)

            if args.idle_only:
                table += idle_only("local folder", storage, workdir, args.sessions)
            else:
                table += three_starts("local folder", storage, local, workdir, args.sessions, {}, args.again)
        if args.only in (None, "seaweedfs"):
            with seaweedfs_server(workdir / "weed") as weed:
                weed.create_bucket(BUCKET)
                options = S3Options(endpoint_url=weed.endpoint_url, region="us-east-1", access_key=weed.access_key,
                                    secret_key=weed.secret_key)  # fmt: skip
                storage = S3Storage(BUCKET, "archive", options)
                written = ensure_catalog(storage, args.sessions, workdir / "weed.written")
                table.append(("SeaweedFS: catalog", written))
                endpoint = weed.endpoint_url

                def s3(cache: Path, interval: str) -> list[str]:
                    return serve_command(f"s3://{BUCKET}/archive", free_port(), cache, "--s3-endpoint", endpoint,
                                         "--s3-region", "us-east-1", "--refresh-interval", interval)  # fmt: skip

                env = {"AWS_ACCESS_KEY_ID": weed.access_key, "AWS_SECRET_ACCESS_KEY": weed.secret_key}
                if args.idle_only:
                    table += idle_only("SeaweedFS", storage, workdir, args.sessions)
                else:
                    table += three_starts("SeaweedFS", storage, s3, workdir, args.sessions, env, args.again)
        print_table(f"ray-history serve: start on {args.sessions:,} sessions", table)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
