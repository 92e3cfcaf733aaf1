"""Taking events in: split a POST into events, set aside the malformed, drop repeats, spool the rest.

This is the hot path. msgspec splits the body into raw per-event byte slices and reads only the few
fields needed to accept an event; the full conversion happens later, off the request path.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from .metrics import CollectorMetrics
from .records import Record, encode_record, json_array, quarantine_item
from .spool import Spool


class BadBody(ValueError):
    """The body is not a JSON array: the whole request is refused."""


class _Head(msgspec.Struct):
    """The fields an event needs to be accepted, in either casing Ray may use."""

    eventId: str | None = None
    event_id: str | None = None
    eventType: str | None = None
    event_type: str | None = None
    timestamp: str | None = None


class _FileHead(msgspec.Struct):
    event_id: str | None = None
    source_type: str | None = None


_split = msgspec.json.Decoder(list[msgspec.Raw])
_head = msgspec.json.Decoder(_Head)
_file_head = msgspec.json.Decoder(_FileHead)


class Deduper:
    """Event ids seen recently, so a batch Ray sends again after a timeout is stored once.

    Bounded: ids are forgotten oldest first past `capacity`. Ray retries within seconds, and the
    server de-duplicates by event id anyway; this keeps the archive from carrying the repeats.
    """

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._seen: set[str] = set()
        self._order: deque[list[str]] = deque()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._seen

    def add(self, event_ids: list[str]) -> None:
        self._seen.update(event_ids)
        self._order.append(event_ids)
        while len(self._seen) > self.capacity and self._order:
            self._seen.difference_update(self._order.popleft())


@dataclass
class Accepted:
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0


class Ingest:
    """Checks, de-duplicates and spools batches; every method is safe to call from many threads."""

    def __init__(self, spool: Spool, deduper: Deduper, metrics: CollectorMetrics) -> None:
        self.spool = spool
        self.deduper = deduper
        self.metrics = metrics
        self._lock = threading.Lock()
        self.session: str = ""
        self.node_id: str | None = None

    def ray_events(self, body: bytes) -> Accepted:
        """A POST of the Ray event stream. Raises BadBody, SpoolFull or SpoolWriteError."""
        try:
            raws = _split.decode(body)
        except msgspec.DecodeError as exc:
            raise BadBody(f"the body must be a JSON array of Ray events: {exc}") from exc
        good: list[tuple[str, bytes]] = []
        bad: list[bytes] = []
        for raw in raws:
            event = bytes(raw)
            try:
                head = _head.decode(event)
            except msgspec.DecodeError as exc:
                bad.append(quarantine_item(event, f"not an event object: {exc}"))
                continue
            event_id = head.eventId or head.event_id
            if not event_id or not (head.eventType or head.event_type) or not head.timestamp:
                bad.append(quarantine_item(event, "missing eventId, eventType or timestamp"))
                continue
            good.append((event_id, event))
        return self._spool("ray", self.session, good, bad)

    def file_lines(self, kind: str, session: str, lines: Iterable[bytes]) -> Accepted:
        """Lines tailed from an export or legacy event file."""
        good: list[tuple[str, bytes]] = []
        bad: list[bytes] = []
        for line in lines:
            try:
                head = _file_head.decode(line)
            except msgspec.DecodeError as exc:
                bad.append(quarantine_item(line, f"not a JSON event line: {exc}"))
                continue
            if not head.event_id or not head.source_type:
                bad.append(quarantine_item(line, "missing event_id or source_type"))
                continue
            good.append((head.event_id, line))
        return self._spool(kind, session, good, bad)

    def polled(self, kind: str, session: str, body: bytes) -> None:
        """A scrape or a dashboard answer. Raises SpoolFull or SpoolWriteError (the poll is lost)."""
        record = Record(kind, session, self.node_id, time.time_ns(), body)  # type: ignore[arg-type]
        with self._lock:
            self.spool.append(encode_record(record))

    def _spool(self, kind: str, session: str, good: list[tuple[str, bytes]], bad: list[bytes]) -> Accepted:
        now = time.time_ns()
        result = Accepted(quarantined=len(bad))
        # One lock around check, write and remember: a failed write must not mark ids as seen,
        # or Ray's retry of the same batch would be dropped as a duplicate.
        with self._lock:
            fresh: list[tuple[str, bytes]] = []
            batch_ids: set[str] = set()
            for event_id, event in good:
                if event_id in self.deduper or event_id in batch_ids:
                    result.duplicates += 1
                    continue
                batch_ids.add(event_id)
                fresh.append((event_id, event))
            if bad:
                quarantine = Record("quarantine", session, self.node_id, now, json_array(bad))
                self.spool.append(encode_record(quarantine))
            if fresh:
                body = json_array([event for _, event in fresh])
                self.spool.append(encode_record(Record(kind, session, self.node_id, now, body)))  # type: ignore[arg-type]
                self.deduper.add([event_id for event_id, _ in fresh])
        result.accepted = len(fresh)
        self.metrics.events_received.labels(kind).inc(result.accepted)
        self.metrics.events_duplicate.inc(result.duplicates)
        self.metrics.events_quarantined.inc(result.quarantined)
        return result


def remembered_ids(record: Record) -> list[str]:
    """The ids of a spooled record, to rebuild the Deduper after a restart."""
    if record.kind == "quarantine":
        return []
    ids = []
    for raw in _split.decode(record.body):
        if record.kind == "ray":
            head = _head.decode(raw)
            ids.append(head.eventId or head.event_id or "")
        else:
            ids.append(_file_head.decode(raw).event_id or "")
    return ids
