"""Polling the head's dashboard for what Ray has no event stream for (archive.events DASHBOARD_*)."""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request

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


class DashboardAnswer(msgspec.Struct):
    """What the spool keeps of one answer, turned into rows when the segment is converted."""

    endpoint: str
    answer: msgspec.Raw


def fetch_json(url: str, timeout: float = POLL_TIMEOUT) -> bytes:
    """The body of a dashboard answer, checked to be JSON. Raises PollFailed saying why."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            body = answer.read()
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
