"""Benchmark: the retention plan over 10,000 sessions, its requests to the store, and its apply.

    python -m bench.retention --sessions 10000 [--only local|seaweedfs] [--workdir DIR]

`bench.archive_synth.write_catalog` writes the documents of 10,000 sessions (teams, RayJobs, labels,
Kueue queues, over 30 days: 90% closed, 7% incomplete, 3% running); this adds what a listing of a real
archive holds besides: an events and a logs part per node, a metrics part per head, and for 60% of the
closed sessions a written snapshot (a `jobs` table, one in ten with a FAILED job). On a local folder the
files are dated as the documents say, so ages spread over the 30 days; an S3 store dates objects itself,
so there every session ended "now" and the plan is made as of 25 days later. Every call to the store goes
through a counting wrapper (on S3, boto3's requests are counted too).

Measured: the plan with a policy of ages only (listings, nothing read), with failed_max_age (the jobs
tables the decisions hang on), with a label rule first (every manifest); then, with failed_max_age, the
first apply (marks), the plan again with the marks in place, the apply after the grace (deletes), du.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from archive import documents, layout
from archive.events import ray_event_to_row
from archive.parquet import rows_to_table, table_to_parquet
from archive.schema import EVENTS, LOGS, METRICS, SNAPSHOT_SCHEMA_VERSION, SNAPSHOT_TABLES
from archive.storage import S3Options, Storage
from archive.storage.local import LocalStorage
from maintenance.cleaner import Cleaner
from maintenance.counting import CountingStorage
from maintenance.inventory import scan
from maintenance.planner import Plan, Planner
from maintenance.policy import DAY_MS, Policy, format_size, load_policy
from maintenance.usage import usage_of

from .archive_synth import Prototypes, put_object, write_catalog
from .table import print_table

MS = 1_000_000
HOUR_MS = 3_600_000
# Ages only: the plan needs nothing but the listings.
POLICY = """
[defaults]
max_age = "21d"
kinds = { events = "14d", logs = "7d", metrics = "10d", snapshots = "60d" }

[[rules]]
name = "abandoned"
statuses = ["incomplete"]
max_age = "3d"

[[rules]]
name = "research keeps longer"
namespaces = ["ml-research", "nlp"]
max_age = "28d"
max_sessions = 40
"""
# Failed jobs kept longer: a session's jobs table is read where its fate depends on it.
FAILED = POLICY.replace('max_age = "21d"\n', 'max_age = "21d"\nfailed_max_age = "28d"\n', 1)
# A legal hold first: every session's manifest must be read to know whether it holds.
LABEL_RULE = """
[[rules]]
name = "legal hold"
labels = { "cost-center" = "cc-1007" }
max_age = "never"
"""


def _policy(workdir: Path, text: str, name: str) -> Policy:
    path = workdir / name
    path.write_text(text)
    return load_policy(path)


class Parts:
    """Real Parquet parts of the archive's schemas, small: the plan lists them, never reads them."""

    def __init__(self) -> None:
        prototypes = Prototypes()
        rows = [ray_event_to_row(prototypes.get(role)) for role in ("task_definition", "owner_submitted",
                                                                   "worker_running", "node_definition")]  # fmt: skip
        self.events = table_to_parquet(rows_to_table(rows, EVENTS))
        self.logs = table_to_parquet(rows_to_table(
            [{"node": "n", "file": "logs/raylet.out", "file_id": "0123456789abcdef", "offset": 0, "line_number": 1,
              "text": "raylet started", "newline": True, "read_at": 0}], LOGS))  # fmt: skip
        self.metrics = table_to_parquet(rows_to_table(
            [{"timestamp": 0, "node": "n", "target": "127.0.0.1:8080", "name": "ray_tasks", "type": "gauge",
              "labels": "{}", "value": 1.0}], METRICS))  # fmt: skip
        self.tasks = table_to_parquet(SNAPSHOT_TABLES["tasks"].empty_table())
        self.jobs = {failed: table_to_parquet(rows_to_table([{"job_id": "01000000", "type": "SUBMISSION",
                     "status": "FAILED" if failed else "SUCCEEDED", "is_hidden": False}], SNAPSHOT_TABLES["jobs"]))
                     for failed in (False, True)}  # fmt: skip


def add_data(storage: Storage, seed: int) -> tuple[int, dict[layout.SessionRef, int]]:
    """Parts and snapshots beside write_catalog's documents; (objects written, each session's end in ms)."""
    parts, draws = Parts(), random.Random(seed)
    sessions = scan(storage).sessions
    ends: dict[layout.SessionRef, int] = {}
    jobs: list[tuple[str, bytes, layout.SessionRef, str]] = []
    for ref, objects in sessions.items():
        closed = objects.documents.get("closed.json")
        markers = [name for name in objects.documents if name.startswith("nodes/")]
        if closed is not None:
            ends[ref] = documents.decode(storage.get(closed.key), documents.Closed).closed_at_ms
        else:
            last = [documents.decode(storage.get(objects.documents[m].key), documents.NodeMarker) for m in markers]
            ends[ref] = max(marker.last_heartbeat_ms for marker in last)
        for index, name in enumerate(sorted(markers)):
            node = name.removeprefix("nodes/").removesuffix(".json")
            seq = f"{ends[ref] - HOUR_MS:013d}-00000001"
            jobs.append((layout.part_key("events", ref, node, seq), parts.events, ref, "events"))
            jobs.append((layout.part_key("logs", ref, node, seq), parts.logs, ref, "logs"))
            if index == 0:
                jobs.append((layout.part_key("metrics", ref, node, seq), parts.metrics, ref, "metrics"))
        if closed is not None and draws.random() < 0.6:
            failed = draws.random() < 0.1
            manifest = documents.SnapshotManifest(schema_version=SNAPSHOT_SCHEMA_VERSION, parts="1:1:1", closed=True,
                                                  end_ns=ends[ref] * MS, built_at_ms=ends[ref] + 60_000,
                                                  tables={"tasks": 0, "jobs": 1})  # fmt: skip
            jobs.append((layout.snapshot_key(ref, "tasks"), parts.tasks, ref, "snapshots"))
            jobs.append((layout.snapshot_key(ref, "jobs"), parts.jobs[failed], ref, "snapshots"))
            jobs.append((layout.snapshot_manifest_key(ref), documents.encode(manifest), ref, "snapshots"))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda job: put_object(storage, *job), jobs))
    return len(jobs), ends


def date_local(storage: LocalStorage, ends: dict[layout.SessionRef, int]) -> None:
    """File times as the documents say: what the collectors wrote at the end, the snapshot a minute after."""
    for ref, end_ms in ends.items():
        for kind in ("sessions", "events", "logs", "metrics", "snapshots"):
            at = (end_ms + 60_000 if kind == "snapshots" else end_ms) * MS
            for info in storage.list(f"{kind}/{ref.path}/"):
                os.utime(storage.root / info.key, ns=(at, at))


def _calls(counting: CountingStorage) -> str:
    calls = ", ".join(f"{name} {count:,}" for name, count in sorted(counting.calls.items()))
    if counting.http:
        calls += f"; HTTP requests {counting.http_requests:,} (" + ", ".join(
            f"{name} {count:,}" for name, count in sorted(counting.http.items())) + ")"  # fmt: skip
    return calls


def _plan_row(plan: Plan) -> str:
    deletes = sum(1 for entry in plan.sessions if entry.action == "delete")
    return (f"{deletes:,} delete, {len(plan.sessions) - deletes:,} expire, {format_size(plan.bytes)}; "
            f"{plan.running} running untouched")  # fmt: skip


def measure(storage: Storage, workdir: Path, now_ms: int, label: str) -> list[tuple[str, str]]:
    counting = CountingStorage(storage)
    rows: list[tuple[str, str]] = []

    def step(name: str, run: Callable[[], object]) -> object:
        counting.reset()
        started = time.perf_counter()
        result = run()
        rows.append((f"{label}: {name}", f"{time.perf_counter() - started:6.2f} s; {_calls(counting)}"))
        return result

    policies = {
        "ages only": _policy(workdir, POLICY, "policy.toml"),
        "+ failed_max_age": _policy(workdir, FAILED, "policy-failed.toml"),
        "+ a label rule first": _policy(workdir, LABEL_RULE + FAILED, "policy-labels.toml"),
    }
    for name, rules in policies.items():
        plan = step(f"plan ({name})", lambda rules=rules: Planner(counting, rules, now_ms=now_ms).plan())
        assert isinstance(plan, Plan)
        rows.append((f"{label}:   its decisions", _plan_row(plan) + f"; documents read {dict(plan.reads)}"))
    policy = policies["+ failed_max_age"]
    plan = Planner(storage, policy, now_ms=now_ms).plan()
    step("apply: marks", lambda: Cleaner(counting, grace_ms=HOUR_MS, now_ms=now_ms).apply(plan))
    later = now_ms + HOUR_MS + 60_000
    again = step("plan again, marks in place", lambda: Planner(counting, policy, now_ms=later).plan())
    assert isinstance(again, Plan)
    report = step(
        "apply after the grace: deletes", lambda: Cleaner(counting, grace_ms=HOUR_MS, now_ms=later).apply(again)
    )
    rows.append((f"{label}:   deleted", json.dumps({k: v for k, v in report.to_json().items() if k != "waiting"})))  # type: ignore[union-attr]
    step("du --by namespace", lambda: usage_of(scan(counting), "namespace"))
    return rows


@contextmanager
def _seaweedfs(workdir: Path) -> Iterator[Storage]:
    from archive.storage.s3 import S3Storage
    from tests.objectstores import seaweedfs_server

    with seaweedfs_server(workdir / "weed") as weed:
        weed.create_bucket("retention-bench")
        options = S3Options(endpoint_url=weed.endpoint_url, region="us-east-1", access_key=weed.access_key,
                            secret_key=weed.secret_key)  # fmt: skip
        yield S3Storage("retention-bench", "archive", options)


def run_on(storage: Storage, workdir: Path, sessions: int, seed: int, local: bool) -> list[tuple[str, str]]:
    label = "local" if local else "SeaweedFS"
    now_ms = time.time_ns() // MS
    started = time.perf_counter()
    catalog = write_catalog(storage, sessions, seed, now_ms=now_ms)
    written, ends = add_data(storage, seed)
    if isinstance(storage, LocalStorage):
        date_local(storage, ends)
    objects = sum(1 for kind in ("sessions", "events", "logs", "metrics", "snapshots") for _ in
                  storage.list(f"{kind}/"))  # fmt: skip
    spent = time.perf_counter() - started
    shape = f"{catalog.documents:,} documents, {written:,} parts and snapshot files"
    rows = [
        (f"{label}: archive", f"{catalog.sessions:,} sessions, {objects:,} objects ({shape}); written in {spent:.0f} s")
    ]
    # An S3 store dates every object now: the plan is made as of 25 days on.
    return rows + measure(storage, workdir, now_ms if local else now_ms + 25 * DAY_MS, label)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", choices=["local", "seaweedfs"], default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="where the archives go (default: a temp dir)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="retention-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str]] = []
    try:
        if args.only in (None, "local"):
            rows += run_on(LocalStorage(workdir / "local"), workdir, args.sessions, args.seed, local=True)
        if args.only in (None, "seaweedfs"):
            with _seaweedfs(workdir) as storage:
                rows += run_on(storage, workdir, args.sessions, args.seed, local=False)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(f"Retention over {args.sessions:,} sessions", rows)


if __name__ == "__main__":
    main()
