"""What the collector reads from Ray's temp dir: the current session, this node's id, Ray's version."""

from __future__ import annotations

import re
from pathlib import Path

_NODE_ID_FILE = re.compile(r"_port_(?P<node>[0-9a-f]{56})$")
_RAY_VERSION = re.compile(rb"ray_version=(?P<version>[0-9][0-9A-Za-z.+-]*)")


def current_session_dir(ray_temp_dir: Path) -> Path | None:
    """The session `session_latest` points to (Ray repoints it when it restarts)."""
    latest = ray_temp_dir / "session_latest"
    try:
        target = latest.resolve(strict=True)
    except (FileNotFoundError, RuntimeError, OSError):
        return None
    return target if target.is_dir() else None


def node_id(session_dir: Path) -> str | None:
    """This node's Ray id, from the `*_port_<node id>` files Ray writes into the session."""
    try:
        names = sorted(path.name for path in session_dir.iterdir())
    except OSError:
        return None
    for name in names:
        match = _NODE_ID_FILE.search(name)
        if match:
            return match["node"]
    return None


def ray_version(session_dir: Path) -> str | None:
    """The version the GCS logs when it starts (head node only)."""
    try:
        with open(session_dir / "logs" / "gcs_server.out", "rb") as handle:
            head = handle.read(64 * 1024)
    except OSError:
        return None
    match = _RAY_VERSION.search(head)
    return match["version"].decode() if match else None


def start_time_ms(session_dir: Path) -> int | None:
    try:
        return int(session_dir.stat().st_mtime * 1000)
    except OSError:
        return None
