"""Benchmark: how soon `ray-history serve` answers, and is ready, on a catalog of N sessions (issue 14).

    python -m bench.startup                                    # 2,000 sessions, SeaweedFS and a local folder
    python -m bench.startup --sessions 100000 --workdir DIR    # written once into DIR, reused by later runs

Writes N sessions' documents (bench.archive_synth.write_catalog: manifest, node markers, closed.json) into a
real SeaweedFS (tests.objectstores) and into a local folder, then starts `ray-history serve` on each as an
operator does (a process of its own, an empty cache) and measures from the spawn: when the port answers
/healthz, when /readyz says ready (the catalog's first load done), and the store requests that took, counted
by the server's own WatchedStorage (ray_history_server_store_calls on /metrics); then when the job index has
every ended session, and its requests. At 100,000 sessions (440,000 documents) writing them into SeaweedFS
takes a quarter of an hour on two cores and the server's first load about as long: --workdir keeps the
archives for the next run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from archive.storage import S3Options, Storage, open_storage
from archive.storage.s3 import S3Storage
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
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text = response.read().decode()
    calls: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name == "ray_history_server_store_calls":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    calls[sample.labels["method"]] += int(sample.value)
    return calls


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
    port_s: float  # spawn to the first /healthz 200
    ready_s: float  # spawn to the first /readyz 200
    load_s: float  # the first load as the server timed it
    while_loading: str  # a /readyz reason seen during the load, with its progress
    calls: Counter[str]  # store calls until ready
    index_s: float | None  # spawn to every ended session in the job index
    index_calls: Counter[str]


def measure(command: list[str], log_path: Path, env: dict[str, str]) -> Startup:
    started = time.perf_counter()
    with serving(command, log_path, env) as process:
        base = f"http://{command[command.index('--listen') + 1]}"
        deadline = started + TIMEOUT_S
        while answer(f"{base}/healthz", timeout=1) is None:
            if process.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"the server did not answer; its log: {log_path}")
            time.sleep(0.01)
        port_s = time.perf_counter() - started
        while_loading, nearest_half = "", 1.0
        while True:
            got = answer(f"{base}/readyz")
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
    return Startup(port_s, ready_s, ready["catalog"]["seconds"], while_loading, calls, index_s, index_calls)


def rows(name: str, sessions: int, run: Startup) -> list[tuple[str, str]]:
    def calls(counted: Counter[str]) -> str:
        return f"{sum(counted.values()):,} ({', '.join(f'{m} {n:,}' for m, n in sorted(counted.items()))})"

    index = f"{run.index_s:.1f} s" if run.index_s is not None else "not within the time limit"
    return [
        (f"{name}: port answers /healthz", f"{run.port_s:.2f} s after the spawn"),
        (f"{name}: /readyz 200 (catalog loaded)", f"{run.ready_s:.1f} s after the spawn; the load {run.load_s:.1f} s, "
         f"{sessions / run.load_s:,.0f} sessions/s"),
        (f"{name}: store requests until ready", calls(run.calls)),
        (f"{name}: /readyz while loading", run.while_loading or "(loaded before a poll saw progress)"),
        (f"{name}: job index has every ended session", f"{index} after the spawn, {calls(run.index_calls)}"),
    ]  # fmt: skip


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
    args = parser.parse_args()

    from tests.objectstores import seaweedfs_server

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rh-bench-startup-"))
    workdir.mkdir(parents=True, exist_ok=True)
    table: list[tuple[str, str]] = []
    try:
        if args.only in (None, "local"):
            storage = open_storage(str(workdir / "archive"))
            table.append(("local folder: catalog", ensure_catalog(storage, args.sessions, workdir / "local.written")))
            shutil.rmtree(workdir / "cache-local", ignore_errors=True)
            command = serve_command(str(workdir / "archive"), free_port(), workdir / "cache-local")
            table += rows("local folder", args.sessions, measure(command, workdir / "serve-local.log", {}))
        if args.only in (None, "seaweedfs"):
            with seaweedfs_server(workdir / "weed") as weed:
                weed.create_bucket(BUCKET)
                options = S3Options(endpoint_url=weed.endpoint_url, region="us-east-1", access_key=weed.access_key,
                                    secret_key=weed.secret_key)  # fmt: skip
                storage = S3Storage(BUCKET, "archive", options)
                written = ensure_catalog(storage, args.sessions, workdir / "weed.written")
                table.append(("SeaweedFS: catalog", written))
                shutil.rmtree(workdir / "cache-weed", ignore_errors=True)
                command = serve_command(f"s3://{BUCKET}/archive", free_port(), workdir / "cache-weed",
                                        "--s3-endpoint", weed.endpoint_url, "--s3-region", "us-east-1")  # fmt: skip
                env = {"AWS_ACCESS_KEY_ID": weed.access_key, "AWS_SECRET_ACCESS_KEY": weed.secret_key}
                table += rows("SeaweedFS", args.sessions, measure(command, workdir / "serve-weed.log", env))
        print_table(f"ray-history serve: start on {args.sessions:,} sessions", table)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
