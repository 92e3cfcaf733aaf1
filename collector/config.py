"""Every setting of the collector, with a default that works on a laptop and in a pod."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from archive.documents import Kubernetes

from .logs import LogSettings
from .polling import PollSettings

MIB = 1024 * 1024


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
    spool_dir: Path = Path("/tmp/ray-history-spool")
    spool_max_bytes: int = 1024 * MIB
    segment_max_bytes: int = 64 * MIB
    seal_interval: float = 10.0
    tail_interval: float = 2.0
    heartbeat_interval: float = 30.0
    shutdown_deadline: float = 20.0
    dedup_capacity: int = 1_000_000
    # Parquet conversion in a separate process keeps it off the receiver's interpreter lock.
    convert_in_subprocess: bool = True
    logs: LogSettings = field(default_factory=LogSettings)
    polling: PollSettings = field(default_factory=PollSettings)

    @property
    def is_head(self) -> bool:
        return self.role.lower() == "head"
