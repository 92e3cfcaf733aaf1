"""Scraping this node's Prometheus endpoints: which ones, and fetching them (their rows: archive.metrics).

The node's own metrics port comes from a flag, else from the `metrics_export_port_<node id>` file
Ray writes into the session. The head also lists its dashboard's and autoscaler's endpoints (and
every node's) in `prom_metrics_service_discovery.json`; those on this node are scraped too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

import msgspec

log = logging.getLogger(__name__)

SERVICE_DISCOVERY_FILE = "prom_metrics_service_discovery.json"
SCRAPE_TIMEOUT = 5.0


class ScrapeFailed(Exception):
    """An endpoint that did not answer with Prometheus text."""


def local_hosts(extra: tuple[str, ...] = ()) -> set[str]:
    """The addresses by which an endpoint on this node may be listed."""
    hosts = {"127.0.0.1", "localhost", "::1", socket.gethostname(), *extra}
    for variable in ("RAY_NODE_IP_ADDRESS", "POD_IP", "MY_POD_IP"):
        if os.environ.get(variable):
            hosts.add(os.environ[variable])
    with contextlib.suppress(OSError):
        hosts.update(info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None))
    return hosts


def metrics_targets(session_dir: Path, ray_temp_dir: Path, port: int | None, hosts: set[str]) -> list[str]:
    """host:port of every endpoint to scrape on this node, the node's own first."""
    own_port = port or _metrics_export_port(session_dir)
    targets = [f"127.0.0.1:{own_port}"] if own_port else []
    for listed in _service_discovery_targets(session_dir, ray_temp_dir):
        host, _, listed_port = listed.rpartition(":")
        if host in hosts and listed_port.isdigit() and int(listed_port) != own_port and listed not in targets:
            targets.append(listed)
    return targets


def _metrics_export_port(session_dir: Path) -> int | None:
    for path in sorted(session_dir.glob("metrics_export_port_*")):
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            continue
    return None


def _service_discovery_targets(session_dir: Path, ray_temp_dir: Path) -> list[str]:
    for folder in (session_dir, ray_temp_dir):
        try:
            groups = json.loads((folder / SERVICE_DISCOVERY_FILE).read_text())
        except (OSError, ValueError):
            continue
        return [target for group in groups if isinstance(group, dict) for target in group.get("targets", [])]
    return []


def fetch(target: str, timeout: float = SCRAPE_TIMEOUT) -> str:
    """The Prometheus text of one endpoint. Raises ScrapeFailed saying why."""
    try:
        with urllib.request.urlopen(f"http://{target}/metrics", timeout=timeout) as answer:
            return answer.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        raise ScrapeFailed(f"{target}: {exc}") from exc


class Scrape(msgspec.Struct):
    """What the spool keeps of one scrape, converted to rows later (off the receiver's thread)."""

    node: str
    target: str
    text: str
