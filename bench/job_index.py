"""Benchmark: the job index across restarts and replicas, and job search at 100,000 sessions (issue 14).

    python -m bench.job_index                                        # 10,000 sessions; search at 100,000
    python -m bench.job_index --sessions 2000 --search-sessions 20000 --workdir DIR
    python -m bench.job_index --only search                          # the search alone

Restart and new replica. N sessions' documents (bench.archive_synth.write_catalog) in a local folder, and for
every ended one what a first server leaves behind: its snapshot written back (snapshot.json and jobs.parquet, the
five jobs an archive_synth session has) over one events part. Then, in this process, each server's store calls
counted (maintenance.counting.CountingStorage) and timed from the call of `index_ended_sessions` (the job index's
background pass) to its return, its catalog already loaded: a first server with an empty cache and no job index
objects (a listing and two reads per session, as every start was before), which publishes the objects; a restart
on its cache (jobs.duckdb); a new replica with an empty cache, which reads the objects.

Search. A job index filled directly with M sessions' synthetic jobs (five each, one of them Ray's hidden driver:
no archive, since only the index answers a search), in a file as the server keeps it; then the p50 and p95 of
GET /api/v1/jobs through the app in this process (FastAPI's TestClient: routing, the query and the JSON, no
socket) for typical filters, after one call each to warm up.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa

from archive import documents, layout
from archive.parquet import table_to_parquet
from archive.parts import parts_fingerprint
from archive.schema import SNAPSHOT_SCHEMA_VERSION, SNAPSHOT_TABLES
from archive.storage import Storage, open_storage
from historyserver.catalog import Catalog
from historyserver.jobindex import Entry, Indexed, JobIndex, JobQuery
from historyserver.maintenance import MaintenanceSettings
from historyserver.reconstruct import OPENING_TABLES
from historyserver.server import INDEX_COLUMNS, JOBS_FILE, HistoryServer, ServerSettings, session_end
from maintenance.counting import CountingStorage

from .archive_synth import write_catalog
from .table import print_table

JOBS = SNAPSHOT_TABLES["jobs"]
DAY_MS = 86_400_000
NAMESPACES = 20
CLUSTERS = 12  # per namespace
REQUESTS = 200


# -- jobs as an archive_synth session has them -------------------------------------------------------------------


def session_jobs(draws: random.Random, number: int, start_ms: int, end_ms: int) -> pa.Table:
    """Five jobs across the session, as bench.archive_synth plans them: Ray's hidden dashboard driver, the RayJob's
    submission, an evaluation, a backfill whose driver never started, and a notebook's direct driver."""
    span = max(end_ms - start_ms, 60_000)

    def at(share: float) -> int:
        return start_ms + int(span * share)

    def status(failing: float) -> str:
        return "FAILED" if draws.random() < failing else "SUCCEEDED"

    plans = [
        ("01000000", None, "DRIVER", "SUCCEEDED", "", 0.0, 1.0, True),
        ("02000000", f"rayjob-{number:06d}", "SUBMISSION", status(0.08),
         "python pipeline.py --config configs/prod.yaml", 0.01, 0.95, False),
        ("03000000", f"raysubmit_{draws.getrandbits(64):016x}", "SUBMISSION", status(0.25),
         "python evaluate.py --split holdout", 0.35, 0.55, False),
        (None, f"raysubmit_{draws.getrandbits(64):016x}", "SUBMISSION", status(0.5),
         "python backfill.py --date yesterday", 0.2, 0.2, False),
        ("04000000", None, "DRIVER", status(0.1), "python -i", 0.7, 0.74, False),
    ]  # fmt: skip
    rows = [
        {"job_id": job_id, "submission_id": submission, "type": kind, "status": state, "entrypoint": entrypoint,
         "message": "Job finished successfully." if state == "SUCCEEDED" else "Job failed.",
         "error_type": None if state == "SUCCEEDED" else "JOB_SUPERVISOR_ACTOR_START_FAILURE",
         "start_time_ms": at(begin), "end_time_ms": at(end) + 4_000,
         "metadata": '{"owner": "eval-bot"}' if submission else "{}", "runtime_env": "{}",
         "driver_node_id": None if job_id is None else f"{draws.getrandbits(128):032x}",
         "driver_ip_address": "10.244.0.12", "driver_pid": 310 + index, "driver_exit_code": None,
         "driver_agent_http_address": "http://10.244.0.12:52365", "is_hidden": hidden}
        for index, (job_id, submission, kind, state, entrypoint, begin, end, hidden) in enumerate(plans)
    ]  # fmt: skip
    return pa.Table.from_pylist(rows, schema=JOBS)


# -- an archive whose ended sessions have written-back snapshots ----------------------------------------------------


def write_archive(storage: Storage, sessions: int, seed: int = 14) -> int:
    """`sessions` sessions' documents, and for each ended one its snapshot over one events part; how many ended.
    Written as of a day ago, so that every session has ended by the time the servers start (one that ended
    between two of them would be new work for the second)."""
    write_catalog(storage, sessions, seed, now_ms=int(time.time() * 1000) - DAY_MS)
    with Catalog(storage) as catalog:
        catalog.refresh()
        ended = catalog.rows_by_status(("closed", "incomplete"), (*INDEX_COLUMNS, "start_time_ms"))
    draws = random.Random(seed)
    jobs = [
        session_jobs(draws, number, row["start_time_ms"] or 0, row["end_time_ms"] or row["start_time_ms"] or 0)
        for number, row in enumerate(ended)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda item: write_snapshot(storage, *item), zip(ended, jobs, strict=True)))
    return len(ended)


def write_snapshot(storage: Storage, row: dict[str, Any], jobs: pa.Table) -> None:
    ref = layout.SessionRef(row["namespace"], row["cluster"], row["session"])
    storage.put(layout.part_key("events", ref, "head", "0000000000001-00000001"), b"PAR1 not read" * 10)
    parts = list(storage.list(layout.parts_prefix("events", ref)))
    end = session_end(row)
    manifest = documents.SnapshotManifest(
        schema_version=SNAPSHOT_SCHEMA_VERSION, parts=parts_fingerprint(parts), closed=end.closed, end_ns=end.end_ns,
        built_at_ms=int(time.time() * 1000), tables={name: jobs.num_rows if name == "jobs" else 0
                                                     for name in OPENING_TABLES},
    )  # fmt: skip
    storage.put(layout.snapshot_key(ref, "jobs"), table_to_parquet(jobs))
    storage.put(layout.snapshot_manifest_key(ref), documents.encode(manifest))


def server(storage: Storage, cache: Path) -> HistoryServer:
    """A started server, its catalog loaded; the job index's pass left to the caller (index_ended_sessions)."""
    history = HistoryServer(storage, ServerSettings(
        cache_dir=cache, refresh_interval=3600, index_jobs=False, catalog_index_interval=0,
        maintenance=MaintenanceSettings(usage_interval_s=0),
    ))  # fmt: skip
    history.start()
    return history


def shut(history: HistoryServer) -> None:
    history.stop()
    history.jobs.close()
    history.catalog.close()


def index_pass(storage: CountingStorage, cache: Path) -> tuple[str, HistoryServer]:
    """One server's job index pass: (its figures, the server)."""
    history = server(storage, cache)
    storage.reset()
    started = time.perf_counter()
    indexed = history.index_ended_sessions()
    seconds = time.perf_counter() - started
    calls = ", ".join(f"{method} {count:,}" for method, count in sorted(storage.calls.items())) or "none"
    return (f"{sum(storage.calls.values()):,} store requests ({calls}), {seconds:.2f} s; {indexed:,} sessions indexed "
            f"by the pass, {history.jobs.sessions_indexed():,} in the index"), history  # fmt: skip


def restarts(workdir: Path, sessions: int) -> list[tuple[str, str]]:
    archive = workdir / f"archive-{sessions}"
    marker = archive / ".bench-written"
    if not marker.exists():
        shutil.rmtree(archive, ignore_errors=True)
        started = time.perf_counter()
        ended = write_archive(open_storage(str(archive)), sessions)
        marker.write_text(f"{ended} ended sessions written in {time.perf_counter() - started:.0f} s\n")
    storage = CountingStorage(open_storage(str(archive)))
    for cache in ("cache-first", "cache-replica"):
        shutil.rmtree(workdir / cache, ignore_errors=True)
    for info in list(storage.inner.list(layout.JOB_INDEX_PREFIX)):  # a first start finds none
        storage.inner.delete(info.key)
    table = [("archive", f"{sessions:,} sessions; {marker.read_text().strip()}")]
    first, history = index_pass(storage, workdir / "cache-first")
    objects = len(list(storage.inner.list(layout.JOB_INDEX_PREFIX)))
    table.append(("first start, no job index objects", f"{first}; {objects} index objects written"))
    shut(history)
    started = time.perf_counter()
    JobIndex(workdir / "cache-first" / JOBS_FILE, storage.uri).close()
    table.append(("opening jobs.duckdb", f"{time.perf_counter() - started:.2f} s (its sessions' sources read)"))
    restart, history = index_pass(storage, workdir / "cache-first")
    table.append(("restart on its cache", restart))
    shut(history)
    replica, history = index_pass(storage, workdir / "cache-replica")
    table.append(("new replica, empty cache", replica))
    shut(history)
    return table


# -- search --------------------------------------------------------------------------------------------------------


def synthetic_entries(sessions: int, now_ms: int, seed: int = 14) -> Iterator[list[Entry]]:
    """`sessions` sessions' jobs over 30 days in NAMESPACES namespaces, in batches of 2,000 sessions."""
    draws = random.Random(seed)
    batch: list[Entry] = []
    for number in range(sessions):
        namespace = f"team-{number % NAMESPACES:02d}"
        ref = layout.SessionRef(namespace, f"rc-{draws.randrange(CLUSTERS)}", f"session_{number:06d}")
        start_ms = now_ms - draws.randrange(30 * DAY_MS)
        end_ms = start_ms + draws.randrange(600_000, 6 * 3_600_000)
        row = {"namespace": namespace, "cluster": ref.cluster, "session": ref.session, "status": "closed",
               "owner_kind": "RayJob", "owner_name": f"{namespace}-nightly", "rayjob": f"{namespace}-nightly",
               "queue": f"{namespace}-queue"}  # fmt: skip
        jobs = session_jobs(draws, number, start_ms, end_ms)
        batch.append(Entry(ref, row, jobs, Indexed("1:1000:1", True, end_ms * 1_000_000)))
        if len(batch) == 2000:
            yield batch
            batch = []
    if batch:
        yield batch


def percentiles(call: Callable[[], Any], requests: int) -> tuple[float, float]:
    """(p50, p95) in ms of `requests` calls in a row, after one to warm up."""
    call()
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return times[len(times) // 2], times[-(-95 * len(times) // 100) - 1]


def search(workdir: Path, sessions: int, requests: int) -> list[tuple[str, str]]:
    from fastapi.testclient import TestClient

    from historyserver.app import create_app

    # A server over an empty archive, its catalog loaded (it has no session: its first refresh, in start(), takes
    # out of the job index any session the catalog lacks, so the index is filled after), then the index filled
    # as a long-running server's is, by puts, and searched as such a server's is (not reopened from its file).
    cache = workdir / f"search-{sessions}"
    shutil.rmtree(cache, ignore_errors=True)
    empty = workdir / "empty-archive"
    empty.mkdir(exist_ok=True)
    history = server(open_storage(str(empty)), cache)
    now_ms = int(time.time() * 1000)
    started = time.perf_counter()
    for batch in synthetic_entries(sessions, now_ms):
        history.jobs.put(batch)
    filled = time.perf_counter() - started
    size = (cache / JOBS_FILE).stat().st_size / 2**20
    client = TestClient(create_app(history))
    table = [("job index", f"{sessions:,} sessions, {sessions * 5:,} jobs (filled directly in {filled:.0f} s); "
              f"jobs.duckdb {size:,.0f} MiB")]  # fmt: skip
    # The newest start in the index: the date filters are relative to it, whenever it was filled.
    newest = history.jobs.list_jobs(JobQuery(limit=1))[1][0]["start_time_ms"]
    week = newest - 7 * DAY_MS
    searches = {
        "newest first (default)": {},
        "status=FAILED": {"status": "FAILED"},
        "a namespace": {"namespace": "team-07"},
        "entrypoint substring": {"entrypoint": "EVALUATE"},
        "a date range (one day)": {"started_after_ms": week, "started_before_ms": week + DAY_MS},
        "sort by start time, ascending": {"sort": "start_time_ms"},
        "deep offset (50,000)": {"offset": 50_000},
        "FAILED in a namespace, a week, by start": {"status": "FAILED", "namespace": "team-07",
                                                    "started_after_ms": week, "sort": "start_time_ms"},
        "by duration, offset 10,000": {"sort": "-duration_ms", "offset": 10_000},
    }  # fmt: skip
    worst = 0.0
    load = os.getloadavg()[0]
    for name, params in searches.items():
        total = client.get("/api/v1/jobs", params={**params, "limit": 1}).json()["total"]

        def call(params: dict[str, Any] = params) -> None:
            answer = client.get("/api/v1/jobs", params={**params, "limit": 100})
            if answer.status_code != 200:
                raise RuntimeError(f"{params} answered {answer.status_code}: {answer.text}")

        query = JobQuery(**{**params, "limit": 100})
        p50, p95 = percentiles(call, requests)
        alone = percentiles(lambda query=query: history.jobs.list_jobs(query), requests)
        worst = max(worst, p95)
        table.append((f"GET /api/v1/jobs: {name}", f"p50 {p50:.1f} ms, p95 {p95:.1f} ms (the index alone: p50 "
                      f"{alone[0]:.1f}, p95 {alone[1]:.1f}); {total:,} jobs match"))  # fmt: skip
    table.append(("worst p95", f"{worst:.1f} ms (target 50 ms); load average {load:.1f} before, "
                  f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores shared with other work"))  # fmt: skip
    shut(history)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10_000, help="sessions of the restart and replica archive")
    parser.add_argument("--search-sessions", type=int, default=100_000, help="sessions of the search's job index")
    parser.add_argument("--requests", type=int, default=REQUESTS, help="requests per search timed")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the archive here, and reuse it")
    parser.add_argument("--only", choices=["restarts", "search"], default=None, help="one half only")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rh-bench-jobindex-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if args.only in (None, "restarts"):
            print_table(f"job index: restart and new replica at {args.sessions:,} sessions (local folder)",
                        restarts(workdir, args.sessions))  # fmt: skip
        if args.only in (None, "search"):
            print_table(f"job search at {args.search_sessions:,} sessions",
                        search(workdir, args.search_sessions, args.requests))  # fmt: skip
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
