"""`ray-history`: one command, a subcommand per job. Every flag also reads an environment variable."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from collector.config import LogSettings

from .access_options import collector_token, server_access
from .bound_options import bounded
from .bound_options import chosen as chosen_bounds
from .catalog_options import catalog_settings
from .compact_command import compact
from .options import archive_settings, cache_setting, open_archive, setting
from .retention_commands import du, lifecycle, retention


def _labels(_: click.Context, __: click.Parameter, value: tuple[str, ...] | str | None) -> dict[str, str]:
    labels = {}
    for entry in (value,) if isinstance(value, str) else value or ():
        for item in filter(str.strip, entry.split(",")):
            key, sep, val = item.partition("=")
            if not sep or not key.strip():
                raise click.BadParameter(f"labels are KEY=VALUE, got {item!r}")
            labels[key.strip()] = val.strip()
    return labels


def _host_port(_: click.Context, __: click.Parameter, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not (0 < int(port) < 65536):
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host or "127.0.0.1", int(port)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@setting("--log-level", "RAY_HISTORY_LOG_LEVEL", "How much to log.", default="INFO",
         type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))  # fmt: skip
def main(log_level: str) -> None:
    """Keep Ray's events, logs and metrics after the cluster is gone, and browse them."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@archive_settings
@setting(
    "--listen",
    "RAY_HISTORY_LISTEN",
    "Where Ray's aggregator agent POSTs events (path /v1/events).",
    default="127.0.0.1:8084",
    callback=_host_port,
)
@setting(
    "--ray-temp-dir",
    "RAY_HISTORY_RAY_TEMP_DIR",
    "Ray's --temp-dir on this node.",
    default="/tmp/ray",
    type=click.Path(path_type=Path),
)
@setting(
    "--namespace",
    ["RAY_HISTORY_NAMESPACE", "RAY_CLUSTER_NAMESPACE"],
    "Kubernetes namespace of the Ray cluster.",
    default="default",
)
@setting(
    "--cluster",
    ["RAY_HISTORY_CLUSTER", "RAY_CLUSTER_NAME"],
    "Name of the Ray cluster (default: the pod's ray.io/cluster label, else 'local').",
    default=None,
)
@setting(
    "--node",
    ["RAY_HISTORY_NODE", "POD_NAME"],
    "This node's name in the archive (default: the host name, i.e. the pod name).",
    default=None,
)
@setting(
    "--role",
    ["RAY_HISTORY_ROLE", "RAY_ROLE"],
    "The head also writes the session manifest and closed.json.",
    default="head",
    type=click.Choice(["head", "worker"], case_sensitive=False),
)
@setting("--owner-kind", "OWNER_KIND", "Kind of the cluster's owner (RayJob, RayService...).", default=None)
@setting("--owner-name", "OWNER_NAME", "Name of the cluster's owner.", default=None)
@setting(
    "--label",
    "RAY_HISTORY_LABELS",
    "KEY=VALUE labels for the session manifest (repeat, or comma-separate).",
    multiple=True,
    callback=_labels,
)
@setting(
    "--spool-dir",
    "RAY_HISTORY_SPOOL_DIR",
    "Local write-ahead spool directory, one per collector; in a pod, a volume that outlives the container "
    "(default: a folder of this collector's own under the temp dir).",
    default=None,
    type=click.Path(path_type=Path),
)
@setting(
    "--max-body-mib",
    "RAY_HISTORY_MAX_BODY_MIB",
    "Largest POST body accepted (413 past it); Ray sends at most 1,000 events, about 1 MiB.",
    default=64,
    type=click.IntRange(min=1),
)
@setting(
    "--max-inflated-mib",
    "RAY_HISTORY_MAX_INFLATED_MIB",
    "Largest size a gzip body may inflate to (413 past it).",
    default=256,
    type=click.IntRange(min=1),
)
@setting(
    "--read-timeout",
    "RAY_HISTORY_READ_TIMEOUT",
    "Seconds a client may take to send a request; idle or slow connections are closed after it.",
    default=30.0,
    type=click.FloatRange(min=0.1),
)
@setting(
    "--max-connections",
    "RAY_HISTORY_MAX_CONNECTIONS",
    "Connections the receiver holds open at once; more are closed at once.",
    default=256,
    type=click.IntRange(min=1),
)
@setting(
    "--dedup-max-mib",
    "RAY_HISTORY_DEDUP_MAX_MIB",
    "Memory for the ids of recent events, to drop batches Ray sends twice (oldest forgotten first).",
    default=128,
    type=click.IntRange(min=1),
)
@setting(
    "--spool-max-mib",
    "RAY_HISTORY_SPOOL_MAX_MIB",
    "Past this the collector answers 503 and Ray retries.",
    default=1024,
    type=click.IntRange(min=1),
)
@setting(
    "--segment-max-mib",
    "RAY_HISTORY_SEGMENT_MAX_MIB",
    "Seal a spool segment at this size.",
    default=64,
    type=click.IntRange(min=1),
)
@setting(
    "--seal-interval",
    "RAY_HISTORY_SEAL_INTERVAL",
    "Seal and ship the spool every N seconds.",
    default=10.0,
    type=click.FloatRange(min=0.1),
)
@setting(
    "--tail-interval",
    "RAY_HISTORY_TAIL_INTERVAL",
    "Read Ray's event files every N seconds.",
    default=2.0,
    type=click.FloatRange(min=0.1),
)
@setting(
    "--heartbeat-interval",
    "RAY_HISTORY_HEARTBEAT_INTERVAL",
    "Write this node's heartbeat every N seconds.",
    default=30.0,
    type=click.FloatRange(min=1),
)
@setting(
    "--shutdown-deadline",
    "RAY_HISTORY_SHUTDOWN_DEADLINE",
    "On SIGTERM, flush within N seconds (a pod's grace period).",
    default=20.0,
    type=click.FloatRange(min=1),
)
@setting(
    "--log-interval",
    "RAY_HISTORY_LOG_INTERVAL",
    "Ship new log lines every N seconds.",
    default=10.0,
    type=click.FloatRange(min=0.1),
)
@setting(
    "--log-exclude",
    "RAY_HISTORY_LOG_EXCLUDE",
    "Leave out log files matching this glob, relative to "
    "logs/ (repeat; replaces the default; what is left out is recorded in the archive).",
    multiple=True,
    default=LogSettings.exclude,
)
@setting(
    "--log-max-file-mib",
    "RAY_HISTORY_LOG_MAX_FILE_MIB",
    "Ship at most this much of each log file (0: all of it); the rest is recorded as left out.",
    default=0,
    type=click.IntRange(min=0),
)
@setting(
    "--metrics-interval",
    "RAY_HISTORY_METRICS_INTERVAL",
    "Scrape this node's Prometheus endpoints every N seconds.",
    default=15.0,
    type=click.FloatRange(min=0.1),
)
@setting(
    "--metrics-port",
    "RAY_HISTORY_METRICS_PORT",
    "This node's Ray metrics port (default: read from the session folder).",
    default=None,
    type=click.IntRange(1, 65535),
)
@setting(
    "--dashboard-url",
    "RAY_HISTORY_DASHBOARD_URL",
    "The head's dashboard, polled for placement groups, jobs, cluster status, Serve and cluster metadata.",
    default="http://127.0.0.1:8265",
)
@setting(
    "--dashboard-interval",
    "RAY_HISTORY_DASHBOARD_INTERVAL",
    "Poll the dashboard every N seconds (head only; once more at shutdown).",
    default=30.0,
    type=click.FloatRange(min=0.1),
)
@setting(
    "--pod-info-dir",
    "RAY_HISTORY_POD_INFO_DIR",
    "Downward API folder with the pod's `labels` and `annotations` files (else POD_LABELS / POD_ANNOTATIONS).",
    default="/etc/podinfo",
    type=click.Path(path_type=Path),
)
@setting(
    "--queue",
    ["RAY_HISTORY_QUEUE", "KUEUE_QUEUE_NAME"],
    "Kueue queue (default: the pod's kueue.x-k8s.io/queue-name).",
    default=None,
)
@setting("--priority-class", ["RAY_HISTORY_PRIORITY_CLASS", "PRIORITY_CLASS_NAME"], "Priority class (default: "
         "the pod's kueue.x-k8s.io/priority-class).", default=None)  # fmt: skip
@setting("--token-file", "RAY_HISTORY_COLLECTOR_TOKEN_FILE", "A file holding the token a POST of events must "
         "carry (Authorization: Bearer, or the password of the export address); or the token itself in "
         "RAY_HISTORY_COLLECTOR_TOKEN. For a receiver listening beyond loopback (docs/auth.md).", default=None,
         type=click.Path(path_type=Path, dir_okay=False))  # fmt: skip
def collect(
    archive: str, s3_endpoint: str | None, s3_region: str | None, s3_path_style: bool, s3_timeout: float,
    listen: tuple[str, int], ray_temp_dir: Path, namespace: str, cluster: str | None, node: str | None, role: str,
    owner_kind: str | None, owner_name: str | None, label: dict[str, str], spool_dir: Path | None,
    max_body_mib: int, max_inflated_mib: int, read_timeout: float, max_connections: int, dedup_max_mib: int,
    spool_max_mib: int, segment_max_mib: int, seal_interval: float, tail_interval: float,
    heartbeat_interval: float, shutdown_deadline: float, log_interval: float, log_exclude: tuple[str, ...],
    log_max_file_mib: int, metrics_interval: float, metrics_port: int | None, dashboard_url: str,
    dashboard_interval: float, pod_info_dir: Path, queue: str | None, priority_class: str | None,
    token_file: Path | None,
) -> None:  # fmt: skip
    """Run the collector sidecar: ship Ray's events, logs and metrics to the archive."""
    from collector.config import MIB, CollectorConfig, PollSettings
    from collector.podinfo import kubernetes_facts, read_pod_metadata
    from collector.service import Collector
    from collector.spool import SpoolInUse

    host, port = listen
    token = collector_token(token_file, os.environ.get("RAY_HISTORY_COLLECTOR_TOKEN"), host)
    pod_labels, pod_annotations = read_pod_metadata(pod_info_dir)
    kubernetes = kubernetes_facts(pod_labels, pod_annotations, node, queue, priority_class)
    cluster = cluster or kubernetes.raycluster or "local"
    if not owner_kind and kubernetes.rayjob:
        owner_kind, owner_name = "RayJob", kubernetes.rayjob
    config = CollectorConfig(
        archive=archive, listen_host=host, listen_port=port, ray_temp_dir=ray_temp_dir, namespace=namespace,
        cluster=cluster, role=role.lower(), owner_kind=owner_kind, owner_name=owner_name,
        labels={**pod_labels, **label}, kubernetes=kubernetes,
        spool_dir=spool_dir, spool_max_bytes=spool_max_mib * MIB, segment_max_bytes=segment_max_mib * MIB,
        max_body_bytes=max_body_mib * MIB, max_inflated_bytes=max_inflated_mib * MIB, read_timeout=read_timeout,
        max_connections=max_connections, dedup_max_bytes=dedup_max_mib * MIB, token_sha256=token,
        seal_interval=seal_interval, tail_interval=tail_interval, heartbeat_interval=heartbeat_interval,
        shutdown_deadline=shutdown_deadline,
        logs=LogSettings(interval=log_interval, exclude=tuple(log_exclude), max_file_bytes=log_max_file_mib * MIB),
        polling=PollSettings(metrics_interval=metrics_interval, metrics_port=metrics_port,
                             dashboard_url=dashboard_url or None, dashboard_interval=dashboard_interval),
        **({"node": node} if node else {}),
    )  # fmt: skip
    # One attempt of a call must fit the shutdown deadline three times over (boto3 tries three times).
    storage = open_archive(archive, s3_endpoint, s3_region, s3_path_style, min(s3_timeout, shutdown_deadline / 4))
    click.echo(
        f"collector for {namespace}/{cluster} node {config.node}: listening on http://{host}:{port}/v1/events, "
        f"archive {storage.uri}, spool {config.spool_dir}",
        err=True,
    )
    try:
        collector = Collector(config, storage)
    except SpoolInUse as exc:
        raise click.ClickException(str(exc)) from exc
    complete = collector.serve()
    # Past the deadline a flush may still be waiting on the object store: leave now, as the pod must.
    # What was not shipped stays in the spool, and the next start ships it.
    logging.shutdown()
    os._exit(0 if complete else 1)


@main.command()
@archive_settings
@setting(
    "--listen",
    "RAY_HISTORY_SERVER_LISTEN",
    "Where the history server answers.",
    default="127.0.0.1:8080",
    callback=_host_port,
)
@cache_setting
@setting(
    "--refresh-interval",
    "RAY_HISTORY_REFRESH_INTERVAL",
    "Look for new sessions every N seconds.",
    default=10.0,
    type=click.FloatRange(min=0.1),
)
@setting(
    "--heartbeat-timeout",
    "RAY_HISTORY_HEARTBEAT_TIMEOUT",
    "A session whose collectors were silent this long, without closed.json, is incomplete.",
    default=90.0,
    type=click.FloatRange(min=1),
)
@setting(
    "--max-open-sessions",
    "RAY_HISTORY_MAX_OPEN_SESSIONS",
    "Sessions kept loaded in memory.",
    default=8,
    type=click.IntRange(min=1),
)
@setting(
    "--sql-timeout",
    "RAY_HISTORY_SQL_TIMEOUT",
    "Time limit of one SQL query (seconds).",
    default=10.0,
    type=click.FloatRange(min=0.1),
)
@setting("--sql-max-rows", "RAY_HISTORY_SQL_MAX_ROWS", "Rows one SQL query may return.", default=10_000,
         type=click.IntRange(min=1))  # fmt: skip
@setting(
    "--index-jobs/--no-index-jobs",
    "RAY_HISTORY_INDEX_JOBS",
    "Read the jobs of every ended session in the background (for /api/v1/jobs), deriving the snapshots no "
    "replica has written yet.",
    default=True,
)
@setting("--s3-budget", "RAY_HISTORY_S3_BUDGET", "Seconds one S3 request may take in all: connect, answer and "
         "retries together (a store that hangs answers a page 503 after it).", default=10.0,
         type=click.FloatRange(min=0.1))  # fmt: skip
@setting("--auth-file", "RAY_HISTORY_AUTH_FILE", "TOML file of who may see which namespaces: users with bearer "
         "tokens, a trusted authenticating proxy and its groups (docs/auth.md). Without it, anyone who reaches the "
         "server sees everything.", default=None, type=click.Path(path_type=Path, dir_okay=False))  # fmt: skip
@setting("--metrics-public/--metrics-private", "RAY_HISTORY_METRICS_PUBLIC", "Whether /metrics answers without "
         "authentication (its counters name no namespace, session or user); private: only for an identity that sees "
         "every namespace, and needs --auth-file.",
         default=True)  # fmt: skip
@setting("--maintenance-interval", "RAY_HISTORY_MAINTENANCE_INTERVAL", "Seconds between the server's own "
         "retention (with --policy) and compaction passes; 0: never (a CronJob runs them).", default=0.0,
         type=click.FloatRange(min=0))  # fmt: skip
@setting("--policy", "RAY_HISTORY_POLICY", "The retention policy (TOML, docs/retention.md) the maintenance passes "
         "apply; without it they only compact.", default=None,
         type=click.Path(path_type=Path, dir_okay=False))  # fmt: skip
@setting("--maintenance-grace", "RAY_HISTORY_MAINTENANCE_GRACE", "Seconds a retention mark stands, and compacted "
         "parts' originals stay, before they are deleted.", default=3600.0, type=click.FloatRange(min=0))  # fmt: skip
@setting("--usage-interval", "RAY_HISTORY_USAGE_INTERVAL", "Seconds between listings of the archive for the usage "
         "gauges on /metrics when no maintenance pass takes them; 0: never.", default=900.0,
         type=click.FloatRange(min=0))  # fmt: skip
@setting("--answer-cache-mb", "RAY_HISTORY_ANSWER_CACHE_MB", "Memory for answers kept for repeated requests "
         "(a finished session's answer never changes).", default=64, type=click.IntRange(min=0))  # fmt: skip
@catalog_settings
@bounded
def serve(
    archive: str, s3_endpoint: str | None, s3_region: str | None, s3_path_style: bool, s3_timeout: float,
    listen: tuple[str, int],
    cache_dir: Path, refresh_interval: float, heartbeat_timeout: float, max_open_sessions: int,
    sql_timeout: float, sql_max_rows: int, index_jobs: bool, s3_budget: float, auth_file: Path | None,
    metrics_public: bool, maintenance_interval: float, policy: Path | None, maintenance_grace: float,
    usage_interval: float, answer_cache_mb: int, catalog: dict[str, Any],
) -> None:  # fmt: skip
    """Serve the history of every session in the archive: JSON API under /api/v1, docs at /docs."""
    from historyserver.starting import StartingPort

    host, port = listen
    try:
        # Bound first: probes are answered from here on, while the imports below take a second or more.
        starting = StartingPort(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}; is a server already "
                                   "there? Choose another address with --listen.") from exc  # fmt: skip
    with starting:
        import uvicorn

        from historyserver.app import create_app
        from historyserver.maintenance import MaintenanceSettings
        from historyserver.server import HistoryServer, ServerSettings
        from maintenance.policy import PolicyError

        storage = open_archive(archive, s3_endpoint, s3_region, s3_path_style, s3_timeout, s3_budget)
        settings = ServerSettings(
            cache_dir=cache_dir, refresh_interval=refresh_interval, heartbeat_timeout=heartbeat_timeout,
            max_open_sessions=max_open_sessions, sql_timeout=sql_timeout, sql_max_rows=sql_max_rows,
            index_jobs=index_jobs, load_in_background=True, listen=listen, answer_cache_bytes=answer_cache_mb << 20,
            maintenance=MaintenanceSettings(maintenance_interval, policy, maintenance_grace, usage_interval,
                                            heartbeat_timeout), **catalog,
        )  # fmt: skip
        access = server_access(auth_file, metrics_public, host)
        settings = dataclasses.replace(settings, **chosen_bounds())
        click.echo(f"history of {storage.uri} on http://{host}:{port}/api/v1/sessions (docs: /docs)", err=True)
        try:
            history = HistoryServer(storage, settings)
        except PolicyError as exc:
            raise click.BadParameter(str(exc), param_hint="--policy") from exc
        # No proxy_headers: the address a trusted proxy is recognised by must be the connection's own, never one
        # a client wrote into X-Forwarded-For.
        config = uvicorn.Config(create_app(history, access), host=host, port=port, log_level="warning",
                                proxy_headers=False)  # fmt: skip
        listening = starting.hand_over()
    uvicorn.Server(config).run(sockets=[listening])


@main.command()
@archive_settings
@click.argument("query")
@setting(
    "--session", "RAY_HISTORY_SQL_SESSION", "namespace/cluster/session to query (default: every session).", default=None
)
@setting(
    "--format",
    "RAY_HISTORY_SQL_FORMAT",
    "Output format.",
    default="table",
    type=click.Choice(["table", "csv", "json", "parquet"]),
)
@setting(
    "--output",
    "RAY_HISTORY_SQL_OUTPUT",
    "Write to this file instead of the terminal.",
    default=None,
    type=click.Path(path_type=Path, dir_okay=False),
)
@cache_setting
@setting("--timeout", "RAY_HISTORY_SQL_TIMEOUT", "Time limit (seconds).", default=60.0, type=click.FloatRange(min=0.1))
@setting("--max-rows", "RAY_HISTORY_SQL_MAX_ROWS", "Rows to return at most.", default=100_000,
         type=click.IntRange(min=1))  # fmt: skip
def sql(
    archive: str, s3_endpoint: str | None, s3_region: str | None, s3_path_style: bool, s3_timeout: float,
    query: str,
    session: str | None, format: str, output: Path | None, cache_dir: Path, timeout: float, max_rows: int,
) -> None:  # fmt: skip
    """Run one read-only SQL query over the views sessions, jobs, tasks, actors, nodes, workers,
    placement_groups, events, logs and metrics."""
    from historyserver.errors import BadRequest, NotFound
    from historyserver.sandbox import SandboxError, format_result
    from historyserver.server import HistoryServer, ServerSettings
    from historyserver.sqlviews import sandbox_for

    if format == "parquet" and output is None:
        raise click.UsageError("Parquet is binary: give --output FILE")
    history = HistoryServer(open_archive(archive, s3_endpoint, s3_region, s3_path_style, s3_timeout),
                            ServerSettings(cache_dir=cache_dir))  # fmt: skip
    history.catalog.refresh()
    try:
        # Across the archive, sessions no server has opened yet are derived once now, so the views hold them all.
        derive = lambda path: click.echo(f"deriving {path} (once)", err=True)  # noqa: E731
        with sandbox_for(history, session or None, derive) as sandbox:
            result = sandbox.run(query, timeout_s=timeout, max_rows=max_rows)
    except (SandboxError, NotFound, BadRequest) as exc:
        raise click.ClickException(str(exc)) from exc
    data = format_result(result, format)
    if output is not None:
        output.write_bytes(data)
    else:
        click.echo(data.decode(), nl=not data.endswith(b"\n"))
    if result.truncated:
        click.echo(f"(stopped at {max_rows} rows: --max-rows)", err=True)


@main.command()
@setting(
    "--workdir",
    "RAY_HISTORY_DEMO_DIR",
    "Where the demo leaves ./ray-history-archive.",
    default=".",
    type=click.Path(path_type=Path, file_okay=False),
)
@setting("--ray-port", "RAY_HISTORY_DEMO_RAY_PORT", "GCS port of the demo's Ray head.", default=6390)
@setting(
    "--port",
    "RAY_HISTORY_DEMO_PORT",
    "Where the history server answers afterwards.",
    default=8080,
    type=click.IntRange(1, 65535),
)
@setting("--serve/--no-serve", "RAY_HISTORY_DEMO_SERVE", "Serve the history once the workload is archived.",
         default=True)  # fmt: skip
def demo(workdir: Path, ray_port: int, port: int, serve: bool) -> None:
    """Run a local Ray with the collector and a real workload, archive it, then serve its history."""
    from .demo import run_demo

    sys.exit(run_demo(workdir.resolve(), ray_port, port if serve else None))


for _command in (retention, lifecycle, du, compact):
    main.add_command(_command)

if __name__ == "__main__":
    main()
