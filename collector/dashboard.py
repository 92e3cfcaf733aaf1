"""Polling the head's dashboard for what Ray has no event stream for (archive.events DASHBOARD_*)."""

from __future__ import annotations

import hashlib
import logging
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgspec

log = logging.getLogger(__name__)

POLL_TIMEOUT = 10.0

# endpoint name (archive.events.DASHBOARD_EVENT_TYPES) -> path on the dashboard
DASHBOARD_PATHS = {
    "placement_groups": "/api/v0/placement_groups?detail=1&limit=10000",
    "jobs": "/api/jobs/",
    "cluster_status": "/api/cluster_status",
    "serve_applications": "/api/serve/applications/",
    "cluster_metadata": "/api/v0/cluster_metadata",
}


class PollFailed(Exception):
    """An endpoint that did not answer with JSON."""


class NotOffered(PollFailed):
    """An endpoint this dashboard does not have (Serve's, when Serve is not installed)."""


class DashboardAnswer(msgspec.Struct):
    """What the spool keeps of one answer, turned into rows when the segment is converted."""

    endpoint: str
    answer: msgspec.Raw


def fetch_json(url: str, timeout: float = POLL_TIMEOUT) -> bytes:
    """The body of a dashboard answer, checked to be JSON. Raises PollFailed saying why."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            body = answer.read()
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 501):
            raise NotOffered(f"{url}: {exc}") from exc
        raise PollFailed(f"{url}: {exc}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise PollFailed(f"{url}: {exc}") from exc
    try:
        msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise PollFailed(f"{url} did not answer JSON: {exc}") from exc
    return body


class AnswerMemory:
    """Remembers the last answer of each endpoint, so an unchanged one is not stored again."""

    def __init__(self) -> None:
        self._digests: dict[str, bytes] = {}

    def is_new(self, endpoint: str, body: bytes) -> bool:
        digest = hashlib.blake2b(body, digest_size=16).digest()
        if self._digests.get(endpoint) == digest:
            return False
        self._digests[endpoint] = digest
        return True


# The state API leaves a placement group's strategy out; the GCS logs it when the group registers.
_REGISTERED = re.compile(rb"Registering placement group, placement group id = ([0-9a-f]+), .*strategy = (\d)")
_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")  # Ray's PlacementStrategy enum


class PlacementStrategies:
    """Placement group id -> strategy, read on from the head's GCS log as it grows."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}
        self._file: tuple[int, int] | None = None  # (device, inode) of the log being read
        self._offset = 0

    def update(self, session_dir: Path) -> dict[str, str]:
        path = session_dir / "logs" / "gcs_server.out"
        try:
            stat = path.stat()
            if self._file != (stat.st_dev, stat.st_ino) or stat.st_size < self._offset:
                self._file, self._offset = (stat.st_dev, stat.st_ino), 0
            with open(path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read(stat.st_size - self._offset)
        except OSError:
            return self.found
        whole = data.rfind(b"\n") + 1
        self._offset += whole
        for group_id, strategy in _REGISTERED.findall(data[:whole]):
            index = int(strategy)
            self.found[group_id.decode()] = _STRATEGIES[index] if index < len(_STRATEGIES) else str(index)
        return self.found


def with_strategies(body: bytes, strategies: dict[str, str]) -> bytes:
    """A placement group answer with each group's `strategy` filled in where the GCS log named it."""
    answer: Any = msgspec.json.decode(body)
    try:
        groups = answer["data"]["result"]["result"]
    except (KeyError, TypeError):
        return body
    for group in groups:
        if isinstance(group, dict) and group.get("placement_group_id") in strategies:
            group.setdefault("strategy", strategies[group["placement_group_id"]])
    return msgspec.json.encode(answer)
