"""`ray-history`: one command, a subcommand per job. Every flag also reads an environment variable."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from .options import storage_from_options


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--log-level", default="INFO", envvar="RAY_HISTORY_LOG_LEVEL", show_envvar=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)  # fmt: skip
def main(log_level: str) -> None:
    """Keep Ray's events, logs and metrics after the cluster is gone, and browse them."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _labels(_: click.Context, __: click.Parameter, value: tuple[str, ...] | str | None) -> dict[str, str]:
    items: list[str] = []
    for entry in (value,) if isinstance(value, str) else value or ():
        items.extend(part for part in entry.split(",") if part.strip())
    labels = {}
    for item in items:
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


def archive_options(func):  # type: ignore[no-untyped-def]
    """--archive and the S3 settings, shared by every subcommand that reads or writes the archive."""
    options = [
        click.option("--archive", default="./ray-history-archive", envvar=["RAY_HISTORY_ARCHIVE"],
                     show_envvar=True, help="Where the archive lives: a directory, file:///path or s3://bucket/prefix."),
        click.option("--s3-endpoint", default=None, envvar=["RAY_HISTORY_S3_ENDPOINT", "AWS_ENDPOINT_URL"],
                     show_envvar=True, help="S3 endpoint URL (MinIO, SeaweedFS...); AWS when unset."),
        click.option("--s3-region", default=None, envvar=["RAY_HISTORY_S3_REGION", "AWS_REGION"],
                     show_envvar=True, help="S3 region."),
        click.option("--s3-path-style/--s3-virtual-hosted", default=True, envvar="RAY_HISTORY_S3_PATH_STYLE",
                     show_envvar=True, help="Path-style addressing (what MinIO and SeaweedFS want)."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@archive_options
@click.option(
    "--listen",
    default="127.0.0.1:8084",
    envvar="RAY_HISTORY_LISTEN",
    show_envvar=True,
    callback=_host_port,
    help="Where Ray's aggregator agent POSTs events (path /v1/events).",
)
@click.option(
    "--ray-temp-dir",
    default="/tmp/ray",
    envvar="RAY_HISTORY_RAY_TEMP_DIR",
    show_envvar=True,
    type=click.Path(path_type=Path),
    help="Ray's --temp-dir on this node.",
)
@click.option(
    "--namespace",
    default="default",
    envvar=["RAY_HISTORY_NAMESPACE", "RAY_CLUSTER_NAMESPACE"],
    show_envvar=True,
    help="Kubernetes namespace of the Ray cluster.",
)
@click.option(
    "--cluster",
    default="local",
    envvar=["RAY_HISTORY_CLUSTER", "RAY_CLUSTER_NAME"],
    show_envvar=True,
    help="Name of the Ray cluster.",
)
@click.option(
    "--node",
    default=None,
    envvar=["RAY_HISTORY_NODE", "POD_NAME"],
    show_envvar=True,
    help="This node's name in the archive (default: the host name, i.e. the pod name).",
)
@click.option(
    "--role",
    default="head",
    envvar=["RAY_HISTORY_ROLE", "RAY_ROLE"],
    show_envvar=True,
    type=click.Choice(["head", "worker"], case_sensitive=False),
    help="The head also writes the session manifest and closed.json.",
)
@click.option(
    "--owner-kind",
    default=None,
    envvar="OWNER_KIND",
    show_envvar=True,
    help="Kind of the cluster's owner (RayJob, RayService...).",
)
@click.option("--owner-name", default=None, envvar="OWNER_NAME", show_envvar=True, help="Name of the owner.")
@click.option(
    "--label",
    "labels",
    multiple=True,
    envvar="RAY_HISTORY_LABELS",
    show_envvar=True,
    callback=_labels,
    help="KEY=VALUE labels for the session manifest (repeat, or comma-separate).",
)
@click.option(
    "--spool-dir",
    default="/tmp/ray-history-spool",
    envvar="RAY_HISTORY_SPOOL_DIR",
    show_envvar=True,
    type=click.Path(path_type=Path),
    help="Local write-ahead spool directory.",
)
@click.option(
    "--spool-max-mib",
    default=1024,
    envvar="RAY_HISTORY_SPOOL_MAX_MIB",
    show_envvar=True,
    type=click.IntRange(min=1),
    help="Past this the collector answers 503 and Ray retries.",
)
@click.option(
    "--segment-max-mib",
    default=64,
    envvar="RAY_HISTORY_SEGMENT_MAX_MIB",
    show_envvar=True,
    type=click.IntRange(min=1),
    help="Seal a spool segment at this size.",
)
@click.option(
    "--seal-interval",
    default=10.0,
    envvar="RAY_HISTORY_SEAL_INTERVAL",
    show_envvar=True,
    type=click.FloatRange(min=0.1),
    help="Seal and ship the spool every N seconds.",
)
@click.option(
    "--tail-interval",
    default=2.0,
    envvar="RAY_HISTORY_TAIL_INTERVAL",
    show_envvar=True,
    type=click.FloatRange(min=0.1),
    help="Read Ray's event files every N seconds.",
)
@click.option(
    "--heartbeat-interval",
    default=30.0,
    envvar="RAY_HISTORY_HEARTBEAT_INTERVAL",
    show_envvar=True,
    type=click.FloatRange(min=1),
    help="Write this node's heartbeat every N seconds.",
)
@click.option(
    "--shutdown-deadline",
    default=20.0,
    envvar="RAY_HISTORY_SHUTDOWN_DEADLINE",
    show_envvar=True,
    type=click.FloatRange(min=1),
    help="On SIGTERM, flush within N seconds (a pod's grace period).",
)
def collect(**options: object) -> None:
    """Run the collector sidecar: receive Ray's events and ship them to the archive."""
    from collector.config import MIB, CollectorConfig
    from collector.service import Collector

    host, port = options["listen"]  # type: ignore[misc]
    config = CollectorConfig(
        archive=str(options["archive"]),
        listen_host=host,
        listen_port=port,
        ray_temp_dir=options["ray_temp_dir"],  # type: ignore[arg-type]
        namespace=str(options["namespace"]),
        cluster=str(options["cluster"]),
        role=str(options["role"]).lower(),
        owner_kind=options["owner_kind"],  # type: ignore[arg-type]
        owner_name=options["owner_name"],  # type: ignore[arg-type]
        labels=options["labels"],  # type: ignore[arg-type]
        spool_dir=options["spool_dir"],  # type: ignore[arg-type]
        spool_max_bytes=int(options["spool_max_mib"]) * MIB,  # type: ignore[call-overload]
        segment_max_bytes=int(options["segment_max_mib"]) * MIB,  # type: ignore[call-overload]
        seal_interval=float(options["seal_interval"]),  # type: ignore[arg-type]
        tail_interval=float(options["tail_interval"]),  # type: ignore[arg-type]
        heartbeat_interval=float(options["heartbeat_interval"]),  # type: ignore[arg-type]
        shutdown_deadline=float(options["shutdown_deadline"]),  # type: ignore[arg-type]
        **({"node": str(options["node"])} if options["node"] else {}),
    )
    storage = storage_from_options(options)
    collector = Collector(config, storage)
    click.echo(
        f"collector for {config.namespace}/{config.cluster} node {config.node}: "
        f"listening on http://{host}:{port}/v1/events, archive {storage.uri}, spool {config.spool_dir}",
        err=True,
    )
    collector.serve()


@main.command()
@click.option(
    "--workdir",
    default=".",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="RAY_HISTORY_DEMO_DIR",
    show_envvar=True,
    help="Where the demo leaves ./ray-history-archive.",
)
@click.option(
    "--ray-port",
    default=6390,
    envvar="RAY_HISTORY_DEMO_RAY_PORT",
    show_envvar=True,
    help="GCS port of the demo's Ray head.",
)
def demo(workdir: Path, ray_port: int) -> None:
    """Run a local Ray with the collector and a real workload, then summarise the archive it left."""
    from .demo import run_demo

    sys.exit(run_demo(workdir.resolve(), ray_port))


if __name__ == "__main__":
    main()
