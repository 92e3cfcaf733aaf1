"""Load test: a bounded server under readers, heavy SQL and cold opens at once, on loopback only.

    python -m bench.load --workdir /tmp/rh-load                       # 1M tasks, 120 s
    python -m bench.load --workdir /tmp/rh-load-quick --tasks 100000 --seconds 30

Writes (once, kept in --workdir) a synthetic archive (bench.archive_synth): one session of --tasks tasks and
--cold-sessions smaller ones. Starts a real `ray-history serve` on a loopback port with the bounds given here
(--sql-concurrency, --sql-memory, --max-derivations, --derive-memory), opens the big session once, then for
--seconds runs together:
  - --readers people paging the big session's tasks (filters, sorts, deep offsets; JSON API and pages), each
    reading a page for --think seconds before the next (0: as fast as the server answers), half the time the
    next page of the view at hand, else another view from its start;
  - --sql clients running heavy SQL over the big session (group-bys, percentiles, a join), and now and then a
    query of huge values that must be refused (400) without the server growing;
  - --cold-openers clients opening sessions nobody opened yet (each a derivation), honouring Retry-After.
Counts every answer by kind and status: anything but 200, the documented 429 (SQL busy) and 503 with
Retry-After (a session being prepared), and the expected 400 of the refused query, is an error. Samples the
server's and its SQL workers' memory every 200 ms, and prints a table (bench.table) with the tasks pages' p95
and the peak memory against the budget the bounds set.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from archive.layout import SessionRef
from archive.storage import open_storage
from historyserver.limits import parse_size, show_size
from ray_history.localray import free_port, wait_healthy

from .archive_synth import write_session
from .table import print_table

BIG = SessionRef("ml-team", "train-1m", "session_2026-11-20_08-00-00_000000_1")
TASK_PAGES_AIM_MS = 200.0
# Processes the readers run in (bench.load.readers), ten readers each by default.
READER_PROCESSES = 5
# Heavy but answerable queries over the big session: a few seconds each with one DuckDB thread.
HEAVY_SQL = (
    "SELECT func_or_class_name, state, count(*) AS attempts, quantile_cont(duration_ms, 0.95) AS p95_ms "
    "FROM tasks GROUP BY ALL ORDER BY attempts DESC",
    "SELECT node_id, count(DISTINCT worker_id) AS workers, sum(duration_ms) AS busy_ms FROM tasks GROUP BY ALL",
    "SELECT t.job_id, count(*) AS attempts, max(t.end_time_ms) - min(t.start_time_ms) AS span_ms "
    "FROM tasks t JOIN jobs j USING (job_id) GROUP BY ALL",
    "SELECT error_type, count(*) AS failed, any_value(error_message) AS example FROM tasks "
    "WHERE state = 'FAILED' GROUP BY ALL ORDER BY failed DESC",
)
# Refused by the memory or byte bound, never answered: the server must not grow by what it asks for.
REFUSED_SQL = "SELECT repeat('x', 10000000) FROM range(50)"
TASK_QUERIES = (
    {}, {"state": "FAILED", "sort": "-duration_ms"}, {"sort": "-duration_ms", "offset": 500_000},
    {"sort": "start_time_ms", "offset": 900_000}, {"sort": "-creation_time_ms", "limit": 200},
)  # fmt: skip


@dataclass
class Tally:
    """Answers by kind and status, latencies of tasks pages, cold opens done, errors with a sample."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    task_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)  # the same pages, as the server timed them
    open_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def merge(self, other: Tally) -> None:
        with self.lock:
            self.statuses.update(other.statuses)
            self.task_ms += other.task_ms
            self.server_ms += other.server_ms
            self.errors += other.errors

    def __getstate__(self) -> dict[str, object]:
        # Sent back from a readers' process: everything but the lock, which a new one replaces.
        return {name: value for name, value in self.__dict__.items() if name != "lock"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state, lock=threading.Lock())

    def add(self, kind: str, status: int, error: str | None = None) -> None:
        with self.lock:
            self.statuses[kind, status] += 1
            if error is not None:
                self.errors.append(error)


def prepare(workdir: Path, tasks: int, cold: int, cold_tasks: int) -> list[SessionRef]:
    """The archive (written once; a rerun with the same --workdir reuses it) and the cold sessions' names."""
    storage = open_storage(str(workdir / "archive"))
    refs = [SessionRef("ml-team", f"cold-{index:03d}", f"session_2026-11-21_08-{index // 60:02d}-{index % 60:02d}_"
                       f"000000_1") for index in range(cold)]  # fmt: skip
    for index, ref in enumerate([BIG, *refs]):
        if not any(True for _ in storage.list(f"sessions/{ref.path}/")):
            count = tasks if ref == BIG else cold_tasks + (index * 7919) % cold_tasks
            print(f"writing {ref.path} ({count:,} tasks)...", flush=True)
            write_session(storage, ref, count, seed=index + 1)
    return refs


def forget_derived(workdir: Path, refs: list[SessionRef]) -> None:
    """Cold sessions cold again: their snapshots out of the archive and the cache (a rerun derives them anew)."""
    storage = open_storage(str(workdir / "archive"))
    for ref in refs:
        for info in list(storage.list(f"snapshots/{ref.path}/")):
            storage.delete(info.key)
        cached = workdir / "cache" / "snapshots" / ref.path
        if cached.exists():
            for path in sorted(cached.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()


class Memory:
    """The server's and its SQL workers' resident memory, sampled every 200 ms."""

    def __init__(self, pid: int) -> None:
        self.server = psutil.Process(pid)
        self.server_peak = self.workers_peak = self.total_peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def now(self) -> tuple[int, int]:
        server = self.server.memory_info().rss
        workers = 0
        for child in self.server.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):  # a worker restarted meanwhile
                workers += child.memory_info().rss
        return server, workers

    def _sample(self) -> None:
        while not self._done.wait(0.2):
            try:
                server, workers = self.now()
            except psutil.NoSuchProcess:
                return
            self.server_peak = max(self.server_peak, server)
            self.workers_peak = max(self.workers_peak, workers)
            self.total_peak = max(self.total_peak, server + workers)


def reader(url: str, stop: threading.Event, tally: Tally, seed: int, think_s: float) -> None:
    draws = random.Random(seed)
    stop.wait(draws.random() * think_s)  # people do not all click at once
    with httpx.Client(base_url=url, timeout=60) as client:
        params = dict(draws.choice(TASK_QUERIES))
        while not stop.is_set():
            # Half the time the next page of the view at hand, else another view from its start: first pages
            # are asked again and again (and kept by the server), later ones seldom.
            if draws.random() < 0.5:
                params["offset"] = params.get("offset", 0) + params.get("limit", 100)
            else:
                params = dict(draws.choice(TASK_QUERIES))
            page = draws.random() < 0.2  # a person's browser, now and then, the same view as HTML
            path = f"/sessions/{BIG.path}/tasks" if page else f"/api/v1/sessions/{BIG.path}/tasks"
            started = time.perf_counter()
            answer = client.get(path, params=params)
            spent = (time.perf_counter() - started) * 1000
            with tally.lock:
                tally.task_ms.append(spent)
                tally.server_ms.append(server_time_ms(answer))
            tally.add("tasks page", answer.status_code, None if answer.status_code == 200 else answer.text[:200])
            stop.wait(think_s * (0.5 + draws.random()))


def server_time_ms(answer: httpx.Response) -> float:
    """The time the server says it took (its Server-Timing header), without the client's own."""
    _, _, duration = answer.headers.get("server-timing", "").partition("dur=")
    return float(duration) if duration else float("nan")


def readers(url: str, seeds: list[int], think_s: float, seconds: float) -> Tally:
    """Readers on threads of a process of their own (bench.load starts several): one interpreter lock shared
    by all fifty, and by the other clients, would add its own waits to what they measure."""
    tally = Tally()
    stop = threading.Event()
    threads = [threading.Thread(target=reader, args=(url, stop, tally, seed, think_s)) for seed in seeds]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return tally


def sql_client(url: str, stop: threading.Event, tally: Tally, seed: int) -> None:
    draws = random.Random(seed)
    with httpx.Client(base_url=url, timeout=120) as client:
        while not stop.is_set():
            refused = draws.random() < 0.1
            sql = REFUSED_SQL if refused else draws.choice(HEAVY_SQL)
            answer = client.post("/api/v1/sql", json={"sql": sql, "session": BIG.path})
            kind = "sql (refused)" if refused else "sql"
            expected = {200, 429} if not refused else {400, 429}
            ok = answer.status_code in expected and (answer.status_code != 429 or "retry-after" in answer.headers)
            tally.add(kind, answer.status_code, None if ok else f"{sql[:40]}: {answer.text[:200]}")
            if answer.status_code == 429:
                stop.wait(float(answer.headers.get("retry-after", "1")))


def cold_opener(url: str, stop: threading.Event, tally: Tally, todo: list[SessionRef]) -> None:
    with httpx.Client(base_url=url, timeout=120) as client:
        while not stop.is_set():
            with tally.lock:
                if not todo:
                    return
                ref = todo.pop(0)
            started = time.perf_counter()
            while not stop.is_set():
                answer = client.get(f"/api/v1/sessions/{ref.path}")
                ok = answer.status_code == 200 or (answer.status_code == 503 and "retry-after" in answer.headers)
                tally.add("cold open", answer.status_code, None if ok else f"{ref.path}: {answer.text[:200]}")
                if answer.status_code != 503:
                    if answer.status_code == 200:
                        with tally.lock:
                            tally.open_s.append(time.perf_counter() - started)
                    break
                stop.wait(min(2.0, float(answer.headers["retry-after"])))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="the archive is written here once and kept")
    parser.add_argument("--tasks", type=int, default=1_000_000, help="tasks of the big session")
    parser.add_argument("--cold-sessions", type=int, default=90, help="enough for 5 openers to derive for 120 s")
    parser.add_argument("--cold-tasks", type=int, default=20_000, help="tasks of a cold session (up to twice)")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--think", type=float, default=1.0, help="seconds a reader reads a page (mean)")
    parser.add_argument("--sql", type=int, default=10)
    parser.add_argument("--cold-openers", type=int, default=5)
    parser.add_argument("--sql-concurrency", default="2")
    parser.add_argument("--sql-memory", default="512MB")
    parser.add_argument("--max-derivations", default="2")
    parser.add_argument("--derive-memory", default="2GB")
    parser.add_argument("--answer-cache-mb", default="64", help="0: every page computed (none kept)")
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    cold = prepare(args.workdir, args.tasks, args.cold_sessions, args.cold_tasks)
    forget_derived(args.workdir, cold)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-c", "from ray_history.cli import main; main()", "--log-level", "WARNING", "serve",
               "--archive", str(args.workdir / "archive"), "--cache-dir", str(args.workdir / "cache"),
               "--listen", f"127.0.0.1:{port}", "--no-index-jobs", "--sql-concurrency", args.sql_concurrency,
               "--sql-memory", args.sql_memory, "--max-derivations", args.max_derivations,
               "--derive-memory", args.derive_memory, "--answer-cache-mb", args.answer_cache_mb]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")]))}
    server = subprocess.Popen(command, env=env)
    rows: list[tuple[str, str]] = []
    try:
        wait_healthy(url, timeout=120, process=server)
        memory = Memory(server.pid)
        with httpx.Client(base_url=url, timeout=600) as client:
            wait_ready(client)
            started = time.perf_counter()
            opened = client.get(f"/api/v1/sessions/{BIG.path}")
            while opened.status_code == 503:
                time.sleep(1)
                opened = client.get(f"/api/v1/sessions/{BIG.path}")
            opened.raise_for_status()
            rows.append((f"big session opened ({args.tasks:,} tasks)", f"{time.perf_counter() - started:.1f} s"))
            # Each filter and sort is numbered once per open session (a quarter of a second for a million rows),
            # then kept: the readers measure pages, not that first numbering.
            started = time.perf_counter()
            for params in TASK_QUERIES:
                client.get(f"/api/v1/sessions/{BIG.path}/tasks", params=params).raise_for_status()
            numbered = time.perf_counter() - started
            rows.append((f"its {len(TASK_QUERIES)} task orders first numbered", f"{numbered:.1f} s"))
            kept_before = kept_answers(client)
        idle_server, idle_workers = memory.now()
        memory.start()
        tally = Tally()
        stop = threading.Event()
        todo = list(cold)
        processes = ProcessPoolExecutor(READER_PROCESSES, mp_context=multiprocessing.get_context("spawn"))
        seeds = [list(range(args.readers))[index::READER_PROCESSES] for index in range(READER_PROCESSES)]
        pages = [processes.submit(readers, url, part, args.think, args.seconds) for part in seeds if part]
        threads = [threading.Thread(target=sql_client, args=(url, stop, tally, i)) for i in range(args.sql)]
        threads += [threading.Thread(target=cold_opener, args=(url, stop, tally, todo))
                    for _ in range(args.cold_openers)]  # fmt: skip
        for thread in threads:
            thread.start()
        time.sleep(args.seconds)
        stop.set()
        for thread in threads:
            thread.join()
        for done in pages:
            tally.merge(done.result())
        processes.shutdown()
        memory.stop()
        rows += report(args, tally, memory, idle_server, idle_workers)
        hits, misses = (after - before for after, before in zip(kept_answers(httpx.Client(base_url=url)),
                                                                 kept_before, strict=True))  # fmt: skip
        rows.insert(-3, ("tasks pages answered from kept answers", f"{hits:,} of {hits + misses:,} "
                         f"({hits / max(1, hits + misses):.0%}; the rest computed)"))  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    print_table(f"bounded server under load: {args.readers} readers ({args.think:g} s per page), {args.sql} SQL "
                f"clients, {args.cold_openers} cold openers, {args.seconds:.0f} s", rows)  # fmt: skip


def kept_answers(client: httpx.Client) -> tuple[int, int]:
    """(hits, misses) of the server's kept answers so far, from its /metrics."""
    found = {}
    for line in client.get("/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("ray_history_server_answers_kept_hits", "ray_history_server_answers_kept_misses"):
            found[name] = int(float(value))
    return found["ray_history_server_answers_kept_hits"], found["ray_history_server_answers_kept_misses"]


def wait_ready(client: httpx.Client) -> None:
    deadline = time.monotonic() + 300
    while client.get("/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError("the server's catalog did not load in 300 s")
        time.sleep(0.5)


def report(args: argparse.Namespace, tally: Tally, memory: Memory, idle_server: int,
           idle_workers: int) -> list[tuple[str, str]]:  # fmt: skip
    pages = tally.task_ms
    served = [ms for ms in tally.server_ms if ms == ms]  # NaN: an answer without the header
    p95 = percentile(pages, 0.95)
    verdict = "met" if p95 < TASK_PAGES_AIM_MS else "MISSED"
    by_kind: dict[str, Counter[int]] = {}
    for (kind, status), count in sorted(tally.statuses.items()):
        by_kind.setdefault(kind, Counter())[status] = count
    rows = [
        ("tasks pages", f"{len(pages):,} in {args.seconds:.0f} s ({len(pages) / args.seconds:.0f}/s)"),
        ("tasks pages p50 / p95 / p99 / max", f"{percentile(pages, 0.5):.0f} / {p95:.0f} / "
         f"{percentile(pages, 0.99):.0f} / {max(pages, default=0):.0f} ms (aim p95 < {TASK_PAGES_AIM_MS:.0f} ms: "
         f"{verdict})"),
        ("the same, in the server (Server-Timing)", f"{percentile(served, 0.5):.0f} / {percentile(served, 0.95):.0f}"
         f" / {percentile(served, 0.99):.0f} / {max(served, default=0):.0f} ms"),
    ]  # fmt: skip
    for kind, statuses in by_kind.items():
        rows.append((f"{kind}: answers by status", ", ".join(f"{status} x{count:,}" for status, count in
                                                             sorted(statuses.items()))))  # fmt: skip
    if tally.open_s:
        rows.append(("cold opens done", f"{len(tally.open_s)} sessions, median {statistics.median(tally.open_s):.1f} s "
                     f"to open (503s included), max {max(tally.open_s):.1f} s"))  # fmt: skip
    rows.append(("errors (not 200, documented 429/503, refused 400)", f"{len(tally.errors)}"
                 + (f": {tally.errors[0]}" if tally.errors else "")))  # fmt: skip
    sql_memory = parse_size(args.sql_memory)
    derive_memory = parse_size(args.derive_memory)
    budget = idle_server + int(args.sql_concurrency) * sql_memory + derive_memory
    rows += [
        ("memory at rest (big session open)",
         f"server {show_size(idle_server)}, SQL workers {show_size(idle_workers)}"),
        ("peak memory: server / SQL workers", f"{show_size(memory.server_peak)} / {show_size(memory.workers_peak)}"),
        ("peak memory, all told", f"{show_size(memory.total_peak)} (budget: at rest + {args.sql_concurrency} x "
         f"{show_size(sql_memory)} SQL + {show_size(derive_memory)} derivations = {show_size(budget)}: "
         f"{'within' if memory.total_peak <= budget else 'OVER'})"),
    ]  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
