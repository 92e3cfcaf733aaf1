"""Benchmark: compaction of a long session's small parts, and what it changes for readers.

    python -m bench.compaction --tasks 200000 --rows-per-part 2000 --log-mib 100 --store both

A synthetic session (bench.archive_synth: events, the workers' logs and every node's metrics) is written
in many small parts, as a collector that seals every few seconds leaves a long run, into a local folder
and/or a real SeaweedFS. Measured: parts and bytes per kind before and after `ray-history compact`'s
Compactor (grace 0), its throughput (MB/s of parts read), and the session's first open (the snapshot
derived from the raw parts by a fresh server: no cache, nothing written back) before and after, the
median of three. On S3 the open fetches every part first, one GET each.

Logs against gzip -6 of the same text, three ways: the synthetic session's logs (their files rebuilt
from the rows), `--log-mib` of Ray-shaped node logs (bench.logs's generator, the 18.8%/16.6% benchmark)
shipped by a LogShipper in parts of `--log-part-kib` of raw text (a node printing ~100 KB/s, shipped
every 10 s), and the real Ray 2.60 capture's logs (tests/fixtures/ray-2.60/logs/run1, 290 KB).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa

from archive import documents, layout
from archive.logs import rebuild_file
from archive.parquet import parquet_to_table
from archive.storage import S3Options, Storage, open_storage
from archive.storage.s3 import S3Storage
from historyserver.server import HistoryServer, ServerSettings
from maintenance.compactor import Compactor, Progress

from .table import print_table

REF = layout.SessionRef("bench", "long-run", "session_2026-11-20_08-00-00_000000_1")
CAPTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "ray-2.60" / "logs" / "run1"
BUCKET = "ray-history-bench"
MB = 1e6


@dataclass
class Sizes:
    parts: int
    bytes: int


def kind_sizes(storage: Storage, kind: layout.PartKind, ref: layout.SessionRef = REF) -> Sizes:
    found = list(storage.list(layout.parts_prefix(kind, ref)))
    return Sizes(len(found), sum(info.size for info in found))


def gzip6(data: bytes) -> int:
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: the gzip container, as `gzip -6` writes it
    return len(packer.compress(data) + packer.flush())


def open_times(storage: Storage, cache_dir: Path, builds: int) -> list[tuple[float, float]]:
    """(seconds, CPU seconds of this process) a fresh server takes to open the session with nothing derived
    (no cache, no written snapshot). CPU time is the steadier figure on a shared machine."""
    spent = []
    for _ in range(builds):
        shutil.rmtree(cache_dir, ignore_errors=True)
        for info in list(storage.list(f"snapshots/{REF.path}/")):
            storage.delete(info.key)
        history = HistoryServer(storage, ServerSettings(cache_dir=cache_dir, index_jobs=False))
        history.catalog.refresh()
        started, cpu = time.perf_counter(), time.process_time()
        history.open(REF.namespace, REF.cluster, REF.session)
        spent.append((time.perf_counter() - started, time.process_time() - cpu))
        history.sessions.snapshots.wait_written()
    return spent


def session_logs_gzip(storage: Storage) -> tuple[int, int]:
    """(raw bytes, gzip -6 bytes) of the session's log files, rebuilt from the rows, file by file."""
    raw = packed = 0
    for kind_node_rows in _node_rows(storage, "logs"):
        for file_id in pa.compute.unique(kind_node_rows["file_id"]).to_pylist():
            data = rebuild_file(kind_node_rows.filter(pa.compute.equal(kind_node_rows["file_id"], file_id)))
            raw += len(data)
            packed += gzip6(data)
    return raw, packed


def _node_rows(storage: Storage, kind: layout.PartKind) -> Iterator[pa.Table]:
    by_node: dict[str, list[pa.Table]] = {}
    for info in storage.list(layout.parts_prefix(kind, REF)):
        name = layout.parse_data_key(info.key)
        if name is not None:
            by_node.setdefault(name.node, []).append(parquet_to_table(storage.get(info.key)))
    for tables in by_node.values():
        yield pa.concat_tables(tables)


class KindClock:
    """When each kind's compaction began and ended, from the compactor's progress."""

    def __init__(self) -> None:
        self.spans: dict[str, list[float]] = {}

    def __call__(self, step: Progress) -> None:
        now = time.perf_counter()
        span = self.spans.setdefault(step.kind, [now, now])
        span[1] = now


def session_run(storage: Storage, where: str, workdir: Path, tasks: int, rows_per_part: int,
                builds: int) -> list[tuple[str, str]]:  # fmt: skip
    from .archive_synth import write_session

    print(f"[{where}] writing a {tasks:,}-task session in parts of at most {rows_per_part:,} rows...", file=sys.stderr)
    started = time.perf_counter()
    stats = write_session(storage, REF, tasks, seed=1, rows_per_part=rows_per_part, logs=True, metrics=True)
    print(f"  {time.perf_counter() - started:.0f} s", file=sys.stderr)
    before = {kind: kind_sizes(storage, kind) for kind in layout.PART_KINDS}
    logs_raw, logs_gzip = session_logs_gzip(storage)
    print(f"[{where}] first open before compaction...", file=sys.stderr)
    open_before = open_times(storage, workdir / "cache", builds)

    print(f"[{where}] compacting...", file=sys.stderr)
    clock = KindClock()
    started, cpu = time.perf_counter(), time.process_time()
    report = Compactor(storage, grace_s=0, progress=clock).run(REF)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    (session,) = report.sessions
    after = {kind: kind_sizes(storage, kind) for kind in layout.PART_KINDS}
    print(f"[{where}] first open after compaction...", file=sys.stderr)
    open_after = open_times(storage, workdir / "cache", builds)

    rows = [("session", f"{tasks:,} tasks, {stats.attempts:,} attempts, {stats.nodes} nodes, {stats.events.rows:,} "
             f"events, {stats.logs.rows:,} log rows, {stats.metrics.rows:,} samples")]  # fmt: skip
    for kind in session.kinds:
        was, now = before[kind.kind], after[kind.kind]
        span = clock.spans.get(kind.kind, [0.0, 0.0])
        speed = kind.read_bytes / MB / (span[1] - span[0]) if span[1] > span[0] else 0.0
        rows.append((f"{kind.kind}: objects, bytes", f"{was.parts:,} -> {now.parts:,}, {was.bytes / MB:,.1f} MB -> "
                     f"{now.bytes / MB:,.1f} MB ({now.bytes / was.bytes:.0%}); {speed:,.1f} MB/s"))  # fmt: skip
    total = report.read_bytes
    rows += [
        ("compaction (all kinds)", f"{seconds:.1f} s, {total / MB:,.1f} MB of parts: {total / MB / seconds:.1f} MB/s"),
        ("  per CPU second", f"{cpu:.1f} CPU s: {total / MB / cpu:.1f} MB per CPU s"),
        (f"first open before (median of {builds})", _seconds(open_before)),
        (f"first open after (median of {builds})", _seconds(open_after)),
        ("session's logs: parts / raw text", f"{before['logs'].bytes / logs_raw:.1%} ({logs_raw / MB:,.1f} MB raw)"),
        ("session's logs: compacted / raw text", f"{after['logs'].bytes / logs_raw:.1%}"),
        ("session's logs: gzip -6 / raw text", f"{logs_gzip / logs_raw:.1%}"),
    ]  # fmt: skip
    return rows


def _seconds(values: list[tuple[float, float]]) -> str:
    walls, cpus = [wall for wall, _ in values], [cpu for _, cpu in values]
    runs = ", ".join(f"{wall:.1f}" for wall in walls)
    return f"{statistics.median(walls):.2f} s, {statistics.median(cpus):.2f} CPU s (runs {runs} s)"


def shipped_logs_run(workdir: Path, logs_dir: Path, raw_bytes: int, part_kib: int, label: str) -> list[tuple[str, str]]:
    """Ship a session's log folder in small parts, compact it: parts and compacted bytes against gzip -6."""
    from collector.config import LogSettings
    from collector.logs import LogShipper
    from collector.metrics import CollectorMetrics

    gzipped = sum(gzip6(path.read_bytes()) for path in logs_dir.rglob("*") if path.is_file())
    workdir.mkdir(parents=True)
    storage = open_storage(str(workdir / "archive"))
    ref = layout.SessionRef("bench", "logs", logs_dir.parent.name)
    settings = replace(LogSettings(), part_max_bytes=part_kib << 10)
    shipper = LogShipper(settings, logs_dir.parent.parent, "bench-node", storage, lambda _: ref, CollectorMetrics(),
                         workdir / "offsets.json")  # fmt: skip
    while not shipper.poll(final=True):
        pass
    storage.put(layout.closed_key(ref), documents.encode(documents.Closed(0, "bench-node", "benchmark")))
    parts = kind_sizes(storage, "logs", ref)
    started = time.perf_counter()
    report = Compactor(storage, grace_s=0).run(ref)
    seconds = time.perf_counter() - started
    compacted = kind_sizes(storage, "logs", ref)
    share, gzip_share = compacted.bytes / raw_bytes, gzipped / raw_bytes
    return [
        (f"{label}: raw", f"{raw_bytes / MB:,.1f} MB in parts of {part_kib} KiB of text: {parts.parts:,} parts"),
        (f"{label}: parts / raw", f"{parts.bytes / raw_bytes:.1%}"),
        (f"{label}: compacted / raw", f"{share:.1%} in {compacted.parts} object(s); "
         f"{report.read_bytes / MB / seconds:.1f} MB/s of parts ({raw_bytes / MB / seconds:.1f} MB/s of text)"),
        (f"{label}: gzip -6 / raw", f"{gzip_share:.1%}"),
        (f"{label}: compacted / gzip", f"{share / gzip_share:.2f} ({'met' if share <= gzip_share else 'MISSED'}: "
         "aim <= 1)"),
    ]  # fmt: skip


def ray_shaped_logs(workdir: Path, mib: int, part_kib: int) -> list[tuple[str, str]]:
    from .logs import make_session, node_sources, write_logs

    sources = node_sources(seed=1, workers=30)
    session = make_session(workdir, sources[0].node.node_id)
    print(f"writing {mib} MiB of Ray-shaped logs...", file=sys.stderr)
    raw, _ = write_logs(session / "logs", sources, mib << 20)
    return shipped_logs_run(workdir / "shipped", session / "logs", raw, part_kib, "Ray-shaped logs")


def captured_logs(workdir: Path) -> list[tuple[str, str]]:
    from .logs import make_session

    session = make_session(workdir, "50dae9eb11ba41e336fa66cb35aa1a3832f70b5b1c80e9d237bec012")
    shutil.copytree(CAPTURE, session / "logs", dirs_exist_ok=True)
    raw = sum(path.stat().st_size for path in (session / "logs").rglob("*") if path.is_file())
    return shipped_logs_run(workdir / "shipped", session / "logs", raw, 64, "real capture's logs")


@contextmanager
def seaweedfs(workdir: Path) -> Iterator[Storage]:
    from tests.objectstores import seaweedfs_server

    with seaweedfs_server(workdir / "seaweedfs") as server:
        server.create_bucket(BUCKET)
        options = S3Options(endpoint_url=server.endpoint_url, region="us-east-1", access_key=server.access_key,
                            secret_key=server.secret_key)  # fmt: skip
        yield S3Storage(BUCKET, "bench", options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--rows-per-part", type=int, default=2_000, help="rows per synthetic part at most")
    parser.add_argument("--log-mib", type=int, default=100, help="Ray-shaped logs to ship, compact and gzip")
    parser.add_argument("--log-part-kib", type=int, default=1024, help="raw log text per shipped part")
    parser.add_argument("--store", choices=["local", "seaweedfs", "both"], default="both")
    parser.add_argument("--builds", type=int, default=3, help="first opens measured before and after")
    parser.add_argument("--workdir", type=Path, default=None, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rh-bench-compaction-"))
    try:
        if args.store in ("local", "both"):
            local = open_storage(str(workdir / "local" / "archive"))
            rows = session_run(local, "local", workdir / "local", args.tasks, args.rows_per_part, args.builds)
            print_table(f"compaction, local folder: a {args.tasks:,}-task session", rows)
        if args.store in ("seaweedfs", "both"):
            with seaweedfs(workdir / "s3") as storage:
                rows = session_run(storage, "seaweedfs", workdir / "s3", args.tasks, args.rows_per_part, args.builds)
            print_table(f"compaction, SeaweedFS (S3): a {args.tasks:,}-task session", rows)
        rows = ray_shaped_logs(workdir / "ray-shaped", args.log_mib, args.log_part_kib)
        rows += captured_logs(workdir / "captured")
        print_table("compacted logs against gzip -6 of the same text", rows)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
