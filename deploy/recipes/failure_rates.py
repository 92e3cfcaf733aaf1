"""Failure rates per function across every session of a month, computed by Ray Data on a Ray cluster.

Reads the archive as docs/archive.md lays it out, with nothing of ray-history installed (a stock Ray image has all
it needs: Ray Data and pyarrow):
  events/{namespace}/{cluster}/{session}/{node}/part-*.parquet   which sessions ran (session names carry their date)
  snapshots/{namespace}/{cluster}/{session}/tasks.parquet        a row per task attempt, as the history server shows it

Rates come from the snapshots' final states, so they follow the server's rules: a task whose end Ray never reported
is not counted as failed. A server derives a session's snapshot when it is opened and, in the background, for every
ended session (--index-jobs); sessions of the month without one yet are listed, not silently left out.

    python failure_rates.py --archive s3://ray-history/archive --month 2026-11 [--namespace ml] [--output rates.csv]

S3 settings come from the usual variables (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID...). Submitted as a
RayJob by rayjob-failure-rates.yaml beside this file.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

# Ray's session folder names start with the date the session started: session_2026-11-28_19-03-57_108652_5250.
SESSION_DATE = re.compile(r"^session_(\d{4}-\d{2})-\d{2}_")
TERMINAL = ("FINISHED", "FAILED")
COLUMNS = ["func_or_class_name", "type", "state"]


@dataclass(frozen=True)
class Session:
    namespace: str
    cluster: str
    session: str

    @property
    def path(self) -> str:
        return f"{self.namespace}/{self.cluster}/{self.session}"


def open_archive(uri: str) -> tuple[pafs.FileSystem, str]:
    """The archive's filesystem and its root path in it (a local folder, file:// or s3://bucket/prefix)."""
    if uri.startswith("s3://"):
        bucket_and_prefix = uri[len("s3://") :].strip("/")
        endpoint = os.environ.get("RAY_HISTORY_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
        region = os.environ.get("RAY_HISTORY_S3_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
        options: dict[str, Any] = {"region": region}
        if endpoint:  # MinIO, SeaweedFS...: path-style addressing, pyarrow's default with an endpoint
            scheme, _, host = endpoint.rpartition("://")
            options.update(endpoint_override=host.rstrip("/"), scheme=scheme or "https")
        # Credentials: pyarrow reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or IRSA's web identity, itself.
        return pafs.S3FileSystem(**options), bucket_and_prefix
    filesystem, path = pafs.FileSystem.from_uri(uri if "://" in uri else os.path.abspath(uri))
    return filesystem, path


def _children(fs: pafs.FileSystem, path: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(info.base_name for info in infos if info.type == pafs.FileType.Directory)


def sessions_of_month(fs: pafs.FileSystem, root: str, month: str, namespace: str | None = None) -> list[Session]:
    """Every session with raw events whose name says it started in `month` (YYYY-MM), walking three levels of
    events/ only (never every part)."""
    found = []
    for ns in [namespace] if namespace else _children(fs, f"{root}/events"):
        for cluster in _children(fs, f"{root}/events/{ns}"):
            for session in _children(fs, f"{root}/events/{ns}/{cluster}"):
                match = SESSION_DATE.match(session)
                if match and match[1] == month:
                    found.append(Session(ns, cluster, session))
    return found


def snapshot_paths(fs: pafs.FileSystem, root: str, sessions: list[Session]) -> tuple[list[str], list[Session]]:
    """The tasks.parquet of each session that has one, and the sessions that have none yet."""
    wanted = [f"{root}/snapshots/{session.path}/tasks.parquet" for session in sessions]
    infos = fs.get_file_info(wanted) if wanted else []
    present = [info.path for info in infos if info.type == pafs.FileType.File]
    missing = [session for session, info in zip(sessions, infos, strict=True) if info.type != pafs.FileType.File]
    return present, missing


def terminal_attempts(batch: pa.Table) -> pa.Table:
    """One batch of snapshot rows to (namespace, function, failed) per attempt that ended: drivers' own tasks and
    attempts whose end is unknown are left out. Runs in Ray Data's workers (and in the tests on plain tables)."""
    namespaces = pc.list_element(pc.split_pattern(pc.cast(batch["path"], pa.string()), "/snapshots/"), 1)
    namespaces = pc.list_element(pc.split_pattern(namespaces, "/"), 0)
    keep = pc.and_(pc.is_in(batch["state"], pa.array(TERMINAL)), pc.not_equal(batch["type"], "DRIVER_TASK"))
    return pa.table(
        {
            "namespace": pc.filter(namespaces, keep),
            "function": pc.filter(pc.fill_null(batch["func_or_class_name"], "(unknown)"), keep),
            "failed": pc.cast(pc.equal(pc.filter(batch["state"], keep), "FAILED"), pa.int64()),
        }
    )


def rates(counts: pa.Table) -> pa.Table:
    """(namespace, function, attempts, failed) to the same with failure_rate, most failures first."""
    rate = pc.divide(pc.cast(counts["failed"], pa.float64()), pc.cast(counts["attempts"], pa.float64()))
    table = counts.append_column("failure_rate", pc.round(rate, 4))
    return table.sort_by([("failed", "descending"), ("attempts", "descending"), ("function", "ascending")])


def failure_rates(paths: list[str], fs: pafs.FileSystem) -> pa.Table:
    """Ray Data over every snapshot: read the three columns, keep the ended attempts, count per function."""
    import ray
    from ray.data.aggregate import Count, Sum

    dataset = ray.data.read_parquet(paths, filesystem=fs, columns=COLUMNS, include_paths=True)
    per_attempt = dataset.map_batches(terminal_attempts, batch_format="pyarrow")
    grouped = per_attempt.groupby(["namespace", "function"]).aggregate(Count(alias_name="attempts"),
                                                                       Sum("failed", alias_name="failed"))  # fmt: skip
    table = pa.Table.from_pylist(grouped.take_all())
    if table.num_rows == 0:
        table = pa.table({"namespace": pa.array([], pa.string()), "function": pa.array([], pa.string()),
                          "attempts": pa.array([], pa.int64()), "failed": pa.array([], pa.int64())})  # fmt: skip
    return rates(table.select(["namespace", "function", "attempts", "failed"]))


def _print(table: pa.Table, limit: int) -> None:
    print(f"{'namespace':<20} {'function':<50} {'attempts':>9} {'failed':>8} {'rate':>7}")
    rows: Iterator[dict[str, Any]] = iter(table.slice(0, limit).to_pylist())
    for row in rows:
        print(f"{row['namespace']:<20} {row['function'][:50]:<50} {row['attempts']:>9} {row['failed']:>8} "
              f"{row['failure_rate']:>7.2%}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", default=os.environ.get("RAY_HISTORY_ARCHIVE"), required=False)
    parser.add_argument("--month", required=True, help="YYYY-MM: sessions that started that month")
    parser.add_argument("--namespace", default=None, help="only this Kubernetes namespace")
    parser.add_argument("--output", default=None, help="also write the table here (.csv or .parquet)")
    parser.add_argument("--top", type=int, default=50, help="rows to print")
    args = parser.parse_args(argv)
    if not args.archive:
        parser.error("--archive (or RAY_HISTORY_ARCHIVE) is required")
    if not re.fullmatch(r"\d{4}-\d{2}", args.month):
        parser.error(f"--month is YYYY-MM, got {args.month!r}")

    fs, root = open_archive(args.archive)
    print(f"reading {args.archive} ({fs.type_name}: {root})", flush=True)
    sessions = sessions_of_month(fs, root, args.month, args.namespace)
    paths, missing = snapshot_paths(fs, root, sessions)
    print(f"{len(sessions)} sessions in {args.month}: {len(paths)} with a snapshot, {len(missing)} without")
    if not sessions:  # say where we looked, so a wrong archive or credentials show
        found = fs.get_file_info(pafs.FileSelector(f"{root}/events", allow_not_found=True, recursive=True))
        endpoint = os.environ.get("RAY_HISTORY_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL") or "AWS"
        print(f"  {root}/events at {endpoint} holds {len(found)} objects: {[i.path for i in found[:5]]}", flush=True)
    for session in missing:
        print(f"  no snapshot yet (open it in ray-history, or let its job index derive it): {session.path}")
    if not paths:
        return 0
    table = failure_rates(paths, fs)
    _print(table, args.top)
    if args.output:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        if args.output.endswith(".parquet"):
            pq.write_table(table, args.output)
        else:
            pacsv.write_csv(table, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
