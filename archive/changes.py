"""The archive's change journal: which sessions' documents changed, and when, in key order.

Every writer of a session document (manifest, node marker, closed.json, retention.json) and the cleaner when it
deletes a session put, after the document, an empty marker

    changes/{hour}/{epoch_ms}-{nonce}/{namespace}/{cluster}/{session}

Its key says everything, so a reader lists markers from a time on (one LIST with start-after) and never reads
one; it then lists only those sessions' documents. The key spells the time as the UTC hour (YYYYMMDDTHH, a
folder of its own, so that a local archive's listing from a recent time skips whole hours) and the epoch
milliseconds, both of fixed width so that key order is time order; the nonce keeps two writers of one
millisecond apart. That is what
lets the history server's catalog refresh an archive of 100,000 sessions in one or two requests when nothing
changed, instead of listing every document (one request per 1,000 on S3).

Order matters: the document first, then its marker, so that a reader who sees the marker sees the document.
A writer that dies between the two, or a writer too old to journal, is caught by the reader's periodic full
listing. Markers are named by the writer's clock: a reader lists from a few minutes before where it stopped
(its window) so that a writer's clock somewhat behind, or a marker landing late, is still seen.

The journal is bounded: markers older than RETENTION_MS are deleted by the cleaner (prune) and, on S3, by the
lifecycle rule `ray-history lifecycle` makes; a reader whose last look is older than that lists everything.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Container, Iterator
from dataclasses import dataclass

from . import layout
from .storage import Storage

log = logging.getLogger(__name__)

PREFIX = "changes/"
_HOUR = re.compile(r"^[0-9]{8}T[0-9]{2}$")
_TIME = re.compile(r"^(?P<ms>[0-9]{13})-(?P<nonce>[0-9a-f]{1,32})$")
_NONCE = re.compile(r"^[0-9a-f]{1,32}$")
# How long a marker is kept. One value for every writer, cleaner and reader: a reader trusts the journal only
# for what is younger than this, so a cleaner keeping markers for less would make it miss changes.
RETENTION_MS = 24 * 3_600_000


@dataclass(frozen=True)
class Change:
    """A change marker: when (by the writer's clock) which session's documents changed."""

    key: str
    at_ms: int
    ref: layout.SessionRef


def _hour(at_ms: int) -> str:
    return time.strftime("%Y%m%dT%H", time.gmtime(at_ms // 1000))


def change_key(ref: layout.SessionRef, at_ms: int, nonce: str) -> str:
    """The key of a change marker."""
    if not 0 <= at_ms < 10**13 or not _NONCE.match(nonce):
        raise layout.InvalidName(f"invalid change marker time {at_ms!r} or nonce {nonce!r}")
    return f"{PREFIX}{_hour(at_ms)}/{at_ms:013d}-{nonce}/{ref.path}"


def start_after(at_ms: int) -> str:
    """A key that every marker of `at_ms` or later sorts after, and every earlier one before."""
    at_ms = max(at_ms, 0)
    return f"{PREFIX}{_hour(at_ms)}/{at_ms:013d}"


def parse_change_key(key: str) -> Change | None:
    """The Change a key names, or None for any other key."""
    bits = key.split("/")
    if len(bits) != 6 or bits[0] + "/" != PREFIX or not _HOUR.match(bits[1]):
        return None
    stamp = _TIME.match(bits[2])
    if stamp is None:
        return None
    try:
        return Change(key, int(stamp["ms"]), layout.SessionRef(bits[3], bits[4], bits[5]))
    except layout.InvalidName:
        return None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def record(storage: Storage, ref: layout.SessionRef, at_ms: int | None = None) -> str:
    """Journal that `ref`'s documents changed (call it after writing or deleting them); the marker's key."""
    key = change_key(ref, now_ms() if at_ms is None else at_ms, secrets.token_hex(4))
    storage.put(key, b"", tags=layout.object_tags("changes", ref))
    return key


def changes_since(storage: Storage, since_ms: int, known: Container[str] = ()) -> Iterator[Change]:
    """The markers named `since_ms` or later, oldest first (one listing; keys that are no marker skipped, and
    those in `known` too, before they are parsed: a reader's window lists them again at every look)."""
    for info in storage.list(PREFIX, start_after=start_after(since_ms)):
        if info.key in known:
            continue
        change = parse_change_key(info.key)
        if change is not None and change.at_ms >= since_ms:
            yield change


def prune(storage: Storage, now: int | None = None, retention_ms: int = RETENTION_MS) -> int:
    """Delete the markers older than `retention_ms`; how many. Keys are in time order: the listing stops at
    the first young marker (a local archive's walk is lazy; S3's is gathered anyway)."""
    cutoff = (now_ms() if now is None else now) - retention_ms
    deleted = 0
    for info in storage.list(PREFIX):
        change = parse_change_key(info.key)
        if change is None:
            continue  # not a marker: no writer of the journal made it, so it is left alone
        if change.at_ms >= cutoff:
            break
        storage.delete(info.key)
        deleted += 1
    if deleted:
        log.info("change journal: %d markers older than %.0f h deleted", deleted, retention_ms / 3_600_000)
    return deleted
