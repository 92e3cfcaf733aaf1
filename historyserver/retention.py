"""What retention decided for a session, as the server uses it (archive.documents.Retention, via the catalog).

A deleted session never reaches here: the catalog has no row for it. An expired kind is one whose objects
the cleaner deletes after its grace, while the session stays: the server stops reading that kind the
moment the catalog knows (a listing could catch it half deleted) and says it expired instead of showing
it empty.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import Expired

KINDS = ("events", "logs", "metrics", "snapshots")
_NOUNS = {"events": "Raw events", "logs": "Logs", "metrics": "Metrics", "snapshots": "The snapshot"}


@dataclass(frozen=True)
class Expiry:
    """One expired kind of a session: when retention decided, when its objects may go, and why."""

    kind: str
    at_ms: int
    delete_after_ms: int
    reason: str

    @property
    def message(self) -> str:
        day = dt.datetime.fromtimestamp(self.at_ms / 1000, dt.UTC).strftime("%Y-%m-%d")
        noun = _NOUNS.get(self.kind, self.kind.capitalize())
        return f"{noun} of this session expired on {day} under the retention policy ({self.reason})"

    def as_dict(self) -> dict[str, Any]:
        """What an API answer carries in its `expired` field."""
        return {"kind": self.kind, "at_ms": self.at_ms, "delete_after_ms": self.delete_after_ms,
                "reason": self.reason, "message": self.message}  # fmt: skip


Expiries = Mapping[str, Expiry]


def expiries(row: Mapping[str, Any]) -> dict[str, Expiry]:
    """The expired kinds of a catalog row (its `expired` column: kind -> {at_ms, delete_after_ms, reason})."""
    expired = row.get("expired") or {}
    return {
        kind: Expiry(kind, int(found["at_ms"]), int(found["delete_after_ms"]), str(found.get("reason", "")))
        for kind, found in sorted(expired.items())
    }


def note(expired: Expiries, kind: str) -> dict[str, Any] | None:
    """The `expired` field of an answer about this kind: None while the kind is there."""
    found = expired.get(kind)
    return found.as_dict() if found is not None else None


def refuse_expired(expired: Expiries, kind: str) -> None:
    """Expired (answered 410 Gone) for a request that needs this kind's objects, once it expired."""
    found = expired.get(kind)
    if found is not None:
        raise Expired(found.message)
