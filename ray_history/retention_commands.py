"""`ray-history retention`, `lifecycle` and `du`: keeping the archive bounded (see docs/retention.md)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from archive.storage import StorageError
from maintenance.policy import Flags, Policy, PolicyError, format_size, load_policy, parse_duration

from .options import archive_settings, open_archive, setting


def _kind_ages(_: click.Context, __: click.Parameter, value: tuple[str, ...] | str | None) -> dict[str, str]:
    ages: dict[str, str] = {}
    for entry in (value,) if isinstance(value, str) else value or ():
        for item in filter(str.strip, entry.split(",")):
            kind, sep, age = item.partition("=")
            if not sep or not kind.strip() or not age.strip():
                raise click.BadParameter(f"kind ages are KIND=AGE (e.g. logs=14d), got {item!r}")
            ages[kind.strip()] = age.strip()
    return ages


def policy_settings(func: Callable[..., Any]) -> Callable[..., Any]:
    """--policy and the flags for the common case, shared by retention and lifecycle."""
    decorators = [
        setting("--policy", "RAY_HISTORY_RETENTION_POLICY", "Retention policy file (TOML; see docs/retention.md).",
                default=None, type=click.Path(path_type=Path, dir_okay=False)),
        setting("--max-age", "RAY_HISTORY_RETENTION_MAX_AGE", "Delete sessions that ended longer ago than this "
                "(e.g. 30d; 'never'); overrides the policy's [defaults].", default=None),
        setting("--failed-max-age", "RAY_HISTORY_RETENTION_FAILED_MAX_AGE", "Keep sessions with a failed job (or "
                "unknown jobs) at least this long.", default=None),
        setting("--kind-age", "RAY_HISTORY_RETENTION_KIND_AGES", "KIND=AGE: expire one kind (events, logs, metrics, "
                "snapshots) of sessions that ended longer ago (repeat, or comma-separate).", multiple=True,
                callback=_kind_ages),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def _policy(policy: Path | None, max_age: str | None, failed_max_age: str | None, kind_age: dict[str, str]) -> Policy:
    try:
        return load_policy(policy, Flags(max_age=max_age, failed_max_age=failed_max_age, kind_ages=kind_age))
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from exc


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])


@click.command()
@archive_settings
@policy_settings
@setting("--grace", "RAY_HISTORY_RETENTION_GRACE", "How long a mark stands before its objects are deleted (the "
         "server hides a deleted session at once).", default="1h")  # fmt: skip
@setting("--now", "RAY_HISTORY_RETENTION_NOW", "Evaluate the policy as of this ISO time, e.g. "
         "2027-01-01T00:00:00Z (what-ifs; default: now).", default=None)  # fmt: skip
@setting("--heartbeat-timeout", "RAY_HISTORY_HEARTBEAT_TIMEOUT", "A session written to within this many seconds is "
         "running, and never touched.", default=90.0, type=click.FloatRange(min=1))  # fmt: skip
@setting("--dry-run", "RAY_HISTORY_RETENTION_DRY_RUN", "Print the plan only.", is_flag=True, default=False)
@setting("--format", "RAY_HISTORY_RETENTION_FORMAT", "Output format.", default="table",
         type=click.Choice(["table", "json"]))  # fmt: skip
def retention(
    archive: str, s3_endpoint: str | None, s3_region: str | None, s3_path_style: bool, s3_timeout: float,
    policy: Path | None, max_age: str | None, failed_max_age: str | None, kind_age: dict[str, str], grace: str,
    now: str | None, heartbeat_timeout: float, dry_run: bool, format: str,
) -> None:  # fmt: skip
    """Delete and expire sessions by policy: print the plan, then mark and (after the grace) delete."""
    from maintenance.cleaner import Cleaner
    from maintenance.planner import Planner, iso, parse_time

    rules = _policy(policy, max_age, failed_max_age, kind_age)
    try:
        grace_ms = parse_duration(grace, "--grace")
        now_ms = parse_time(now) if now else None
    except (PolicyError, ValueError) as exc:
        raise click.BadParameter(str(exc)) from exc
    if grace_ms is None:
        raise click.BadParameter("--grace never would never delete anything: give a duration, e.g. 1h")
    if rules.is_empty():
        click.echo("the policy limits nothing: give --max-age, --kind-age or --policy FILE", err=True)
    storage = open_archive(archive, s3_endpoint, s3_region, s3_path_style, s3_timeout)
    try:
        plan = Planner(storage, rules, now_ms=now_ms, heartbeat_timeout_s=heartbeat_timeout).plan()
        output: dict[str, Any] = plan.to_json()
        if format == "table":
            click.echo(_plan_table(plan))
        report = None
        if not dry_run:
            report = Cleaner(storage, grace_ms=grace_ms, now_ms=plan.now_ms).apply(plan)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    if format == "json":
        click.echo(json.dumps(output | {"applied": report.to_json() if report else None}, indent=2))
    elif report is None:
        click.echo("dry run: nothing written")
    else:
        click.echo(f"applied: {report.marked} retention documents written; {report.sessions_deleted} sessions and "
                   f"{report.kinds_expired} kinds deleted: {report.objects_deleted:,} objects, "
                   f"{format_size(report.bytes_deleted)}")  # fmt: skip
        if report.waiting:
            after = max(when for _, when in report.waiting)
            click.echo(f"{len(report.waiting)} marks wait for their grace (the last until {iso(after)}): the next "
                       "run after that deletes their objects")  # fmt: skip


def _plan_table(plan: Any) -> str:
    rows = [
        [entry.ref.path, entry.action, ",".join(entry.kinds), format_size(entry.bytes), entry.rule, entry.reason]
        for entry in plan.sessions
    ]
    deletes = sum(1 for entry in plan.sessions if entry.action == "delete")
    summary = (
        f"plan as of {plan.to_json()['now']}: {len(plan.sessions)} sessions ({deletes} delete, "
        f"{len(plan.sessions) - deletes} expire), {format_size(plan.bytes)}; {plan.scanned:,} sessions in the "
        f"archive ({plan.running} running, never touched), {plan.listed:,} objects listed, documents read: "
        + ", ".join(f"{what} {count}" for what, count in plan.reads.items())
    )
    if not rows:
        return summary
    return _table(["session", "action", "kinds", "bytes", "rule", "reason"], rows, right=[3]) + "\n" + summary


@click.command()
@archive_settings
@policy_settings
@setting("--format", "RAY_HISTORY_LIFECYCLE_FORMAT", "s3: the lifecycle configuration JSON (aws s3api "
         "put-bucket-lifecycle-configuration); minio: mc ilm rule add commands.", default="s3",
         type=click.Choice(["s3", "minio"]))  # fmt: skip
@setting("--mc-alias", "RAY_HISTORY_MC_ALIAS", "The mc alias of the MinIO deployment (minio format).",
         default="myminio")  # fmt: skip
@setting("--apply", "RAY_HISTORY_LIFECYCLE_APPLY", "Put the rules on the archive's bucket (its other rules kept).",
         is_flag=True, default=False)  # fmt: skip
def lifecycle(
    archive: str, s3_endpoint: str | None, s3_region: str | None, s3_path_style: bool, s3_timeout: float,
    policy: Path | None, max_age: str | None, failed_max_age: str | None, kind_age: dict[str, str], format: str,
    mc_alias: str, apply: bool,
) -> None:  # fmt: skip
    """The bucket's lifecycle rules from the retention policy: a backstop that expires later than retention."""
    from archive.storage.s3 import S3Storage
    from maintenance import lifecycle as rules_of

    rules = _policy(policy, max_age, failed_max_age, kind_age)
    storage = open_archive(archive, s3_endpoint, s3_region, s3_path_style, s3_timeout)
    s3 = storage if isinstance(storage, S3Storage) else None
    root = f"{s3.prefix}/" if s3 is not None and s3.prefix else ""
    try:
        configuration = rules_of.s3_configuration(rules, root)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in rules_of.describe(rules) or ["no kind has an age: only the housekeeping rule"]:
        click.echo(f"# {line}", err=True)
    if format == "s3":
        click.echo(json.dumps(configuration, indent=2))
    else:
        target = f"{mc_alias}/{s3.bucket if s3 is not None else 'BUCKET'}"
        click.echo("\n".join(rules_of.minio_commands(rules, target, root)))
    if apply:
        try:
            applied = rules_of.apply_configuration(storage, configuration)
        except StorageError as exc:
            raise click.ClickException(str(exc)) from exc
        for warning in applied.warnings:
            click.echo(f"warning: {warning}", err=True)
        kept = f", kept the bucket's {len(applied.kept)} other rules" if applied.kept else ""
        click.echo(f"applied {applied.rules} rules to {storage.uri}{kept}", err=True)


@click.command()
@archive_settings
@setting("--by", "RAY_HISTORY_DU_BY", "Group by.", default="namespace",
         type=click.Choice(["namespace", "cluster", "kind", "month"]))  # fmt: skip
@setting("--format", "RAY_HISTORY_DU_FORMAT", "Output format.", default="table", type=click.Choice(["table", "json"]))
def du(
    archive: str, s3_endpoint: str | None, s3_region: str | None, s3_path_style: bool, s3_timeout: float, by: str,
    format: str,
) -> None:  # fmt: skip
    """What the archive holds: sessions, objects and bytes per namespace, cluster, kind or month (of the end)."""
    from maintenance.inventory import scan
    from maintenance.usage import totals, usage_of

    storage = open_archive(archive, s3_endpoint, s3_region, s3_path_style, s3_timeout)
    try:
        inventory = scan(storage)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    rows, total = usage_of(inventory, by), totals(inventory)
    if format == "json":
        found = {"by": by, "groups": [row.to_json() for row in rows], "total": total.to_json()}
        click.echo(json.dumps(found, indent=2))
        return
    cells = [[row.group, f"{row.sessions:,}", f"{row.objects:,}", f"{row.bytes:,}", format_size(row.bytes)]
             for row in (*rows, total)]  # fmt: skip
    click.echo(_table([by, "sessions", "objects", "bytes", "size"], cells, right=[1, 2, 3, 4]))
