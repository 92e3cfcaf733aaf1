"""Taking events in: split a POST into events, set aside the malformed, drop repeats, spool the rest.

This is the hot path. msgspec splits the body into raw per-event byte slices; each event is then
converted to its archive row once, here, so that an event the archive could not hold is quarantined
at the door, alone, and never reaches a spool segment where it could cost its neighbours. The spool
keeps the original bytes; the shipper converts them again off the request path.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from archive.events import MalformedEvent

from .metrics import CollectorMetrics
from .records import Record, encode_record, event_row, json_array, quarantine_item
from .spool import Spool


class BadBody(ValueError):
    """The body is not a JSON array: the whole request is refused."""


class _Head(msgspec.Struct):
    """An event's id, in either casing Ray may use: what de-duplication and a restart need."""

    eventId: str | None = None
    event_id: str | None = None


_split = msgspec.json.Decoder(list[msgspec.Raw])
_head = msgspec.json.Decoder(_Head)


# What one remembered id costs beyond its characters: the str object, its set slot and its list slot.
ID_OVERHEAD_BYTES = 49 + 2 * 8 + 8 + 8


class Deduper:
    """Event ids seen recently, so a batch Ray sends again after a timeout is stored once.

    Bounded in bytes: ids are forgotten oldest batch first past `max_bytes`. Ray retries within
    seconds, and the server de-duplicates by event id anyway; this keeps the archive from carrying
    the repeats.
    """

    def __init__(self, max_bytes: int = 128 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._seen: set[str] = set()
        self._order: deque[tuple[list[str], int]] = deque()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._seen

    def add(self, event_ids: list[str]) -> None:
        cost = sum(len(event_id) for event_id in event_ids) + ID_OVERHEAD_BYTES * len(event_ids)
        self._seen.update(event_ids)
        self._order.append((event_ids, cost))
        self.bytes += cost
        while self.bytes > self.max_bytes and self._order:
            forgotten, freed = self._order.popleft()
            self._seen.difference_update(forgotten)
            self.bytes -= freed


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
        except RecursionError as exc:
            raise BadBody("the body is nested too deeply to be Ray events (at most a few hundred levels)") from exc
        good: list[tuple[str, bytes]] = []
        bad: list[bytes] = []
        for raw in raws:
            event = bytes(raw)
            problem = _problem(event, "ray", self.session, self.node_id)
            if problem is None:
                good.append((_event_id(event), event))
            else:
                bad.append(quarantine_item(event, problem))
        return self._spool("ray", self.session, good, bad)

    def file_lines(self, kind: str, session: str, lines: Iterable[bytes]) -> Accepted:
        """Lines tailed from an export or legacy event file."""
        good: list[tuple[str, bytes]] = []
        bad: list[bytes] = []
        for line in lines:
            problem = _problem(line, kind, session, self.node_id)
            if problem is None:
                good.append((_event_id(line), line))
            else:
                bad.append(quarantine_item(line, problem))
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


def _problem(event: bytes, kind: str, session: str, node_id: str | None) -> str | None:
    """Why the archive could not hold this event, or None: the whole conversion, run once at the door."""
    try:
        event_row(kind, msgspec.json.decode(event), session, node_id)  # type: ignore[arg-type]
    except msgspec.DecodeError as exc:
        return f"not a JSON event: {exc}"
    except MalformedEvent as exc:
        return str(exc)
    except RecursionError:
        return "nested too deeply"
    except Exception as exc:  # whatever else a hostile event finds: quarantined alone
        return f"cannot be converted: {type(exc).__name__}: {exc}"
    return None


def _event_id(event: bytes) -> str:
    head = _head.decode(event)
    return head.eventId or head.event_id or ""


def remembered_ids(record: Record) -> list[str]:
    """The ids of a spooled record, to rebuild the Deduper after a restart."""
    if record.kind not in ("ray", "export", "legacy"):
        return []
    return [_event_id(bytes(raw)) for raw in _split.decode(record.body)]
