"""Every setting of the collector, with a default that works on a laptop and in a pod."""

from __future__ import annotations

import hashlib
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from archive.documents import Kubernetes

MIB = 1024 * 1024


@dataclass(frozen=True)
class LogSettings:
    interval: float = 10.0
    exclude: tuple[str, ...] = ("events/*", "export_events/*")  # relative to logs/; those are events
    max_file_bytes: int = 0  # 0: no cap
    part_max_bytes: int = 64 * MIB  # raw bytes per part (bounds memory)
    read_max_bytes: int = 16 * MIB  # per file per round, so one busy file cannot starve the others


@dataclass(frozen=True)
class PollSettings:
    metrics_interval: float = 15.0
    metrics_port: int | None = None  # None: from the session folder
    dashboard_url: str | None = "http://127.0.0.1:8265"  # None: do not poll (worker nodes)
    dashboard_interval: float = 30.0


@dataclass(frozen=True)
class CollectorConfig:
    archive: str = "./ray-history-archive"
    listen_host: str = "127.0.0.1"
    listen_port: int = 8084
    ray_temp_dir: Path = Path("/tmp/ray")
    namespace: str = "default"
    cluster: str = "local"
    # The key segment of this node's objects: the pod name in Kubernetes, the host name elsewhere.
    node: str = field(default_factory=socket.gethostname)
    role: str = "head"  # the head also writes the session manifest and closed.json
    owner_kind: str | None = None
    owner_name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    kubernetes: Kubernetes = field(default_factory=Kubernetes)
    # None: a folder of this collector's own under the temp dir (see default_spool_dir).
    spool_dir: Path = None  # type: ignore[assignment]
    spool_max_bytes: int = 1024 * MIB
    segment_max_bytes: int = 64 * MIB
    seal_interval: float = 10.0
    tail_interval: float = 2.0
    heartbeat_interval: float = 30.0
    shutdown_deadline: float = 20.0
    dedup_max_bytes: int = 128 * MIB
    # The receiver's bounds: a POST's body as sent and once inflated, how long a client may take to
    # send a request, and how many connections it may hold open at once.
    max_body_bytes: int = 64 * MIB
    max_inflated_bytes: int = 256 * MIB
    read_timeout: float = 30.0
    max_connections: int = 256
    # SHA-256 of the token a POST of events must carry (collector.auth); None: no token is asked for.
    token_sha256: bytes | None = None
    # Parquet conversion in a separate process keeps it off the receiver's interpreter lock.
    convert_in_subprocess: bool = True
    logs: LogSettings = field(default_factory=LogSettings)
    polling: PollSettings = field(default_factory=PollSettings)

    def __post_init__(self) -> None:
        if self.spool_dir is None:
            spool = default_spool_dir(self.archive, self.namespace, self.cluster, self.node)
            object.__setattr__(self, "spool_dir", spool)

    @property
    def is_head(self) -> bool:
        return self.role.lower() == "head"


def default_spool_dir(archive: str, namespace: str, cluster: str, node: str) -> Path:
    """A spool folder no other collector on this machine shares (two clusters, a test beside the demo)."""
    target = hashlib.blake2b(f"{archive}\0{namespace}\0{cluster}\0{node}".encode(), digest_size=6).hexdigest()
    return Path(tempfile.gettempdir()) / "ray-history-spool" / f"{namespace}.{cluster}.{node}.{target}"
