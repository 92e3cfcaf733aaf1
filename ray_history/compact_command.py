"""`ray-history compact`: rewrite ended sessions' small parts into few large objects (see docs/compaction.md)."""

from __future__ import annotations

import json
import sys
import threading
import time

import click

from archive.layout import InvalidName, SessionRef
from archive.storage import StorageError
from maintenance.compactor import (
    DEFAULT_GRACE_S,
    DEFAULT_JOBS,
    DEFAULT_MAX_BYTES,
    CompactionReport,
    Compactor,
    Progress,
)
from maintenance.policy import PolicyError, parse_duration, parse_size

from .options import archive_settings, open_archive, setting

# Progress lines at most this often (plus one per object written), so a long run shows it is alive.
PROGRESS_EVERY_S = 2.0


def _grace(_: click.Context, __: click.Parameter, value: str) -> float:
    """Seconds of a duration written as retention's are (1h, 30m, 1d12h); a bare 0 is no grace."""
    try:
        ms = 0 if str(value).strip() == "0" else parse_duration(str(value), "grace")
    except PolicyError as exc:
        raise click.BadParameter(str(exc)) from exc
    if ms is None:
        raise click.BadParameter("the grace cannot be 'never': replaced parts would be kept for ever")
    return ms / 1000


def _size(_: click.Context, __: click.Parameter, value: str) -> int:
    try:
        size = parse_size(str(value), "size bound")
    except PolicyError as exc:
        raise click.BadParameter(str(exc)) from exc
    if not size:
        raise click.BadParameter("the size bound must be at least one byte")
    return size


def _session(_: click.Context, __: click.Parameter, value: str | None) -> SessionRef | None:
    if not value:
        return None
    bits = value.strip("/").split("/")
    try:
        if len(bits) != 3:
            raise InvalidName("give namespace/cluster/session")
        return SessionRef(*bits)
    except InvalidName as exc:
        raise click.BadParameter(f"{value!r}: {exc}") from exc


@click.command()
@archive_settings
@setting("--session", "RAY_HISTORY_COMPACT_SESSION", "Only this session (namespace/cluster/session); default: "
         "every ended session.", default=None, callback=_session)  # fmt: skip
@setting("--grace", "RAY_HISTORY_COMPACT_GRACE", "Replaced parts are deleted once the compacted object is this old "
         "(a later run deletes them), and a session is compacted once it had no new part for this long.",
         default=f"{DEFAULT_GRACE_S / 3600:g}h", callback=_grace)  # fmt: skip
@setting("--max-bytes", "RAY_HISTORY_COMPACT_MAX_BYTES", "Parts' bytes one compacted object holds at most "
         "(objects this big are left as they are).", default=f"{DEFAULT_MAX_BYTES // 10**6}MB",
         callback=_size)  # fmt: skip
@setting(
    "--jobs",
    "RAY_HISTORY_COMPACT_JOBS",
    "Groups of parts rewritten at once, on as many threads (each "
    "holds up to ~128 MB of rows and its output in memory).",
    default=DEFAULT_JOBS,
    type=click.IntRange(min=1),
)
@setting("--dry-run/--apply", "RAY_HISTORY_COMPACT_DRY_RUN", "Read and compress as applying would, but write and "
         "delete nothing: the report says what applying does.", default=False)  # fmt: skip
@setting("--format", "RAY_HISTORY_COMPACT_FORMAT", "Report format.", default="table",
         type=click.Choice(["table", "json"]))  # fmt: skip
def compact(
    archive: str, s3_endpoint: str | None, s3_region: str | None, s3_path_style: bool, s3_timeout: float,
    session: SessionRef | None, grace: float, max_bytes: int, jobs: int, dry_run: bool, format: str,
) -> None:  # fmt: skip
    """Rewrite ended sessions' small parts into few large Parquet objects, losslessly; replaced parts are
    deleted after the grace. Idempotent: run it again (a CronJob) and it finishes what a killed run left."""
    storage = open_archive(archive, s3_endpoint, s3_region, s3_path_style, s3_timeout)
    printer = _Printer(dry_run)
    compactor = Compactor(storage, grace_s=grace, max_bytes=max_bytes, dry_run=dry_run, progress=printer, jobs=jobs)
    try:
        report = compactor.run(session)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    if format == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(render_table(report))
    if any(found.error for found in report.sessions):
        sys.exit(1)


class _Printer:
    """Progress on stderr: each object written, and where reading stands every few seconds."""

    def __init__(self, dry_run: bool) -> None:
        self.wrote = "would write" if dry_run else "wrote"
        self.last = 0.0
        self.lock = threading.Lock()  # called from the compactor's threads

    def __call__(self, step: Progress) -> None:
        with self.lock:
            self._print(step)

    def _print(self, step: Progress) -> None:
        now = time.monotonic()
        if step.written is not None:
            click.echo(f"{step.session} {step.kind} {step.node}: {self.wrote} {step.written.rsplit('/', 1)[1]} "
                       f"({step.total} objects merged)", err=True)  # fmt: skip
        elif now - self.last >= PROGRESS_EVERY_S or step.done == step.total:
            click.echo(f"{step.session} {step.kind} {step.node}: read {step.done}/{step.total} objects, "
                       f"{_mb(step.bytes_done)}/{_mb(step.bytes_total)}", err=True)  # fmt: skip
        else:
            return
        self.last = now


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def render_table(report: CompactionReport) -> str:
    """A line per session and kind where something was (or would be) written or deleted, or waits for the
    grace: live objects and bytes before -> after. Sessions with nothing to do are counted at the end, those
    left alone listed with the reason (the JSON format has every session)."""
    headers = ("session", "kind", "objects", "bytes", "written", "deleted", "waiting")
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    idle = 0
    for found in report.sessions:
        if found.skipped or found.error:
            notes.append(f"{found.path}: {'error: ' + found.error if found.error else 'left alone: ' + found.skipped}")
            continue
        busy = [kind for kind in found.kinds if kind.written or kind.deleted or kind.waiting or kind.notes]
        idle += not busy
        for kind in busy:
            rows.append((
                found.path, kind.kind, f"{kind.parts_before} -> {kind.parts_after}",
                f"{_mb(kind.bytes_before)} -> {_mb(kind.bytes_after)}", str(len(kind.written)),
                f"{kind.deleted} ({_mb(kind.deleted_bytes)})", f"{kind.waiting} ({_mb(kind.waiting_bytes)})",
            ))  # fmt: skip
            notes += [f"{found.path} {kind.kind}: {note}" for note in kind.notes]
        notes += [f"{found.path}: {note}" for note in found.notes]
        if found.snapshot_updated:
            notes.append(f"{found.path}: snapshot.json {'would get' if report.dry_run else 'got'} the new parts "
                         "fingerprint (no derivation needed)")  # fmt: skip
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
             for line in (headers, *rows)] if rows else ["nothing to compact or delete"]  # fmt: skip
    speed = report.read_bytes / 1e6 / report.seconds if report.seconds else 0.0
    lines.append(f"{'dry run: nothing written or deleted; ' if report.dry_run else ''}{len(report.sessions)} "
                 f"sessions, {idle} with nothing to do; {_mb(report.read_bytes)} read in {report.seconds:.1f} s "
                 f"({speed:.1f} MB/s)")  # fmt: skip
    return "\n".join(lines + notes)
