"""Benchmark: replay synthetic Ray events into a running collector and measure what it costs.

    python -m bench.collector --events 500000

Starts a real `ray-history collect` (local archive, durable spool), POSTs 1000-event batches shaped
like Ray 2.60's as fast as one keep-alive connection allows, then SIGTERMs it and waits for the
archive to be complete. Prints a table: events/s, MB/s, POST latency, archive size against the raw
JSON and against gzip of it, and the collector's peak RSS and CPU (with its converter process).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from archive.storage import open_storage
from ray_history.localray import collector_command, free_port, wait_healthy

from .synth import Synth, post_bodies
from .table import print_table


class ProcessWatch(threading.Thread):
    """Samples the RSS and CPU time of a process and its children until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak_rss = 0
        self.cpu_seconds = 0.0
        self._stop_event = threading.Event()

    def _sample(self) -> None:
        processes = [self.process, *self.process.children(recursive=True)]
        rss, cpu = 0, 0.0
        for proc in processes:
            try:
                rss += proc.memory_info().rss
                times = proc.cpu_times()
                cpu += times.user + times.system
            except psutil.Error:
                continue
        self.peak_rss = max(self.peak_rss, rss)
        self.cpu_seconds = max(self.cpu_seconds, cpu)

    def run(self) -> None:
        while not self._stop_event.wait(0.1):
            try:
                self._sample()
            except psutil.Error:
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def run(events: int, batch: int, workdir: Path) -> list[tuple[str, str]]:
    print(f"generating {events:,} synthetic events in {batch}-event POSTs...", file=sys.stderr)
    bodies = [body for body, _ in post_bodies(Synth(seed=1).events(events), batch=batch)]
    raw_bytes = sum(len(body) for body in bodies)
    sample = b"".join(bodies[: max(1, len(bodies) // 10)])
    gzip_share = len(gzip.compress(sample, compresslevel=6)) / len(sample)

    port = free_port()
    archive = workdir / "archive"
    command = collector_command(str(archive), port, workdir / "spool", workdir / "ray", "--shutdown-deadline", "600")
    quiet = {**os.environ, "RAY_HISTORY_LOG_LEVEL": "WARNING"}
    collector = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True, env=quiet)
    wait_healthy(f"http://127.0.0.1:{port}", process=collector)
    watch = ProcessWatch(collector.pid)
    watch.start()

    print(f"posting {len(bodies)} batches ({raw_bytes / 1e6:.0f} MB)...", file=sys.stderr)
    latencies: list[float] = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    for body in bodies:
        sent = time.perf_counter()
        conn.request("POST", "/v1/events", body=body, headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"the collector answered {answer.status}")
        latencies.append(time.perf_counter() - sent)
    ingest_seconds = time.perf_counter() - started
    conn.close()

    print("SIGTERM: waiting for the archive to be complete...", file=sys.stderr)
    collector.terminate()
    collector.wait(timeout=900)
    complete_seconds = time.perf_counter() - started
    watch.stop()

    storage = open_storage(str(archive))
    archive_bytes = sum(info.size for info in storage.list("events/"))
    latencies.sort()
    cores = watch.cpu_seconds / complete_seconds
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return [
        ("events", f"{events:,}"),
        ("raw JSON", f"{raw_bytes / 1e6:,.0f} MB"),
        ("ingest into durable spool", f"{events / ingest_seconds:,.0f} events/s"),
        ("ingest bandwidth", f"{raw_bytes / 1e6 / ingest_seconds:,.1f} MB/s"),
        ("POST latency p50", f"{statistics.median(latencies) * 1000:.1f} ms"),
        ("POST latency p99", f"{p99 * 1000:.1f} ms"),
        ("all in the archive (end to end)", f"{events / complete_seconds:,.0f} events/s ({complete_seconds:.1f} s)"),
        ("archive / raw JSON", f"{archive_bytes / raw_bytes:.1%}"),
        ("gzip -6 / raw JSON (same data)", f"{gzip_share:.1%}"),
        ("archive / gzip", f"{archive_bytes / raw_bytes / gzip_share:.2f}"),
        ("collector peak RSS (with converter)", f"{watch.peak_rss / 2**20:,.0f} MiB"),
        ("collector CPU (with converter)", f"{watch.cpu_seconds:.1f} s, {cores:.2f} cores"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rh-bench-") as workdir:
        print_table("collector: event stream to archive", run(args.events, args.batch, Path(workdir)))


if __name__ == "__main__":
    main()
