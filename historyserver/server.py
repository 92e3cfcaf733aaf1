"""The history server's parts, assembled: the catalog (what exists), the session cache (what is open).

Routers reach everything through `HistoryServer`, so each part can change alone.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archive import layout
from archive.storage import Storage

from .catalog import Catalog
from .errors import BadRequest, NotFound
from .reconstruct import SessionEnd
from .sessions import OpenSession, SessionCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerSettings:
    cache_dir: Path = Path("/tmp/ray-history-cache")
    refresh_interval: float = 10.0
    heartbeat_timeout: float = 90.0
    max_open_sessions: int = 8
    sql_timeout: float = 10.0
    sql_max_rows: int = 10_000


class HistoryServer:
    def __init__(self, storage: Storage, settings: ServerSettings) -> None:
        self.storage = storage
        self.settings = settings
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog(storage, None, settings.heartbeat_timeout)
        self.sessions = SessionCache(storage, settings.cache_dir, settings.max_open_sessions)
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        self.ready = False

    def start(self) -> None:
        """Read the catalog once, then keep it fresh in the background."""
        self.catalog.refresh()
        self.ready = True
        self._refresher = threading.Thread(target=self._refresh_loop, name="catalog-refresh", daemon=True)
        self._refresher.start()

    def stop(self) -> None:
        self._stop.set()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.settings.refresh_interval):
            try:
                self.catalog.refresh()
            except Exception:
                log.exception("catalog refresh failed; trying again in %.0f s", self.settings.refresh_interval)

    def session_row(self, namespace: str, cluster: str, session: str) -> dict[str, Any]:
        try:
            layout.SessionRef(namespace, cluster, session)
        except layout.InvalidName as exc:
            raise BadRequest(str(exc)) from exc
        row = self.catalog.get(namespace, cluster, session)
        if row is None:
            raise NotFound(f"no session {namespace}/{cluster}/{session} in the archive")
        return row

    def open(self, namespace: str, cluster: str, session: str) -> OpenSession:
        """The session, opened (its snapshot derived on first open)."""
        row = self.session_row(namespace, cluster, session)
        return self.sessions.get(layout.SessionRef(namespace, cluster, session), session_end(row))


def session_end(row: dict[str, Any]) -> SessionEnd:
    """How the catalog says the session ended: closed, or silent for too long (treated as ended)."""
    if row["status"] == "running":
        return SessionEnd(closed=False, end_ns=None, reason=None)
    end_ms = row.get("end_time_ms")
    reason = row.get("closed_reason") or "the collectors stopped reporting: the cluster is presumed gone"
    return SessionEnd(closed=True, end_ns=end_ms * 1_000_000 if end_ms is not None else None, reason=reason)
