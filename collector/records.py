"""What the collector keeps in its spool, and how a sealed segment becomes Parquet parts.

Every source (the HTTP event stream, export files, legacy event files) appends records; a record
carries the session current when it was received, so converting a segment again after a crash
gives byte-for-byte the same parts under the same names.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from archive.events import (
    dashboard_answer_to_rows,
    export_event_to_row,
    legacy_event_to_row,
    ray_event_to_row,
)
from archive.layout import InvalidName, PartKind, check_name
from archive.metrics import sample_rows
from archive.parquet import check_row, rows_to_table, table_to_parquet
from archive.schema import EVENTS, METRICS

from .dashboard import DashboardAnswer
from .scrape import Scrape
from .spool import read_records

log = logging.getLogger(__name__)

RecordKind = Literal["ray", "export", "legacy", "quarantine", "scrape", "dashboard"]
QUARANTINED_EVENT = "QUARANTINED_EVENT"
UNKNOWN_SESSION = "unknown-session"


class Record(msgspec.Struct, array_like=True):
    kind: RecordKind
    session: str  # the session current at receipt; events that name their own keep theirs
    node_id: str | None  # the Ray node id (hex) of this collector's node, when known
    received_ns: int
    # A JSON array of events or file lines, or for quarantine [{"reason", "raw"}]; a Scrape or a
    # DashboardAnswer as JSON.
    body: bytes


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Record)
_split = msgspec.json.Decoder(list[msgspec.Raw]).decode


def encode_record(record: Record) -> bytes:
    return _encoder.encode(record)


def decode_record(data: bytes) -> Record:
    return _decoder.decode(data)


def json_array(items: list[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"


def quarantine_item(raw: bytes, reason: str) -> bytes:
    """A rejected event, kept with why: as text when it is UTF-8, else as base64."""
    try:
        kept: dict[str, str] = {"reason": reason, "raw": raw.decode("utf-8")}
    except UnicodeDecodeError:
        kept = {"reason": reason, "raw_base64": base64.b64encode(raw).decode("ascii")}
    return msgspec.json.encode(kept)


def _quarantine_row(record: Record, item: dict[str, Any]) -> dict[str, Any]:
    raw = item.get("raw", item.get("raw_base64", ""))
    digest = hashlib.blake2b(f"{record.received_ns}:{raw}".encode(), digest_size=16).hexdigest()
    reason = str(item.get("reason", "malformed"))
    return {
        "event_id": digest,
        "event_type": QUARANTINED_EVENT,
        "timestamp": record.received_ns,
        "session_name": record.session or UNKNOWN_SESSION,
        "source_node_id": record.node_id,
        "state": reason.split(":")[0][:64],
        "payload": msgspec.json.encode(item).decode(),
    }


@dataclass
class ConvertedSegment:
    """The Parquet parts found in one segment (one per kind and session), and what was counted."""

    parts: dict[tuple[PartKind, str], bytes] = field(default_factory=dict)
    rows: dict[tuple[PartKind, str], int] = field(default_factory=dict)
    events: int = 0
    duplicates: int = 0
    quarantined: int = 0


def event_row(kind: RecordKind, item: Any, session: str, node_id: str | None) -> dict[str, Any]:
    """The events-table row of one event of a "ray", "export" or "legacy" record; MalformedEvent if none.

    A Ray event names its own session (`session` is the fallback); a file's lines belong to the session
    whose folder they were read from.
    """
    if kind == "ray":
        return ray_event_to_row(item, default_session=session or None)
    if kind == "export":
        return export_event_to_row(item, session, node_id)
    return legacy_event_to_row(item, session, node_id)


def _record_rows(record: Record) -> tuple[PartKind, list[dict[str, Any]], int]:
    """The kind of rows a record gives, its rows, and how many of its items went to quarantine.

    Events were checked when they were received; should one still fail here (a record spooled by an
    older collector, a bug), it goes to quarantine alone and its neighbours are kept.
    """
    try:
        return _polled_rows(record) if record.kind in ("scrape", "dashboard") else _event_rows(record)
    except Exception as exc:  # a record that cannot be read costs only itself
        log.error("a %s record received at %d could not be converted; it is quarantined whole: %s",
                  record.kind, record.received_ns, exc)  # fmt: skip
        return "events", [_quarantine_row(record, _raw_item(record.body, f"unreadable {record.kind} record: {exc}"))], 1


def _raw_item(raw: bytes, reason: str) -> dict[str, Any]:
    return msgspec.json.decode(quarantine_item(raw, reason))


def _polled_rows(record: Record) -> tuple[PartKind, list[dict[str, Any]], int]:
    if record.kind == "scrape":
        scrape = msgspec.json.decode(record.body, type=Scrape)
        try:
            rows = sample_rows(scrape.text, scrape.node, scrape.target, record.node_id, record.received_ns)
            for row in rows:
                check_row(row, METRICS)  # a sample's own timestamp can be anything
            return "metrics", rows, 0
        except ValueError as exc:
            reason = f"unparseable Prometheus text from {scrape.target}: {exc}"
            return "events", [_quarantine_row(record, {"reason": reason, "raw": scrape.text})], 1
    if record.kind == "dashboard":
        answer = msgspec.json.decode(record.body, type=DashboardAnswer)
        session = record.session or UNKNOWN_SESSION
        rows = dashboard_answer_to_rows(
            answer.endpoint, msgspec.json.decode(answer.answer), session, record.node_id, record.received_ns
        )
        for row in rows:
            check_row(row, EVENTS)
        return "events", rows, 0


def _event_rows(record: Record) -> tuple[PartKind, list[dict[str, Any]], int]:
    if record.kind == "quarantine":
        items = msgspec.json.decode(record.body)
        return "events", [_quarantine_row(record, item) for item in items], len(items)
    rows = []
    bad = 0
    for raw in _split(record.body):
        try:
            rows.append(event_row(record.kind, msgspec.json.decode(raw), record.session, record.node_id))
        except Exception as exc:  # one bad event never costs another
            rows.append(_quarantine_row(record, _raw_item(bytes(raw), str(exc))))
            bad += 1
    return "events", rows, bad


def convert_segment(path: Path) -> ConvertedSegment:
    """Turn a sealed segment into one zstd Parquet part per session, de-duplicated by event id."""
    # Millions of short-lived dicts and no cycles: the cyclic collector would cost more than the
    # conversion itself (measured: 3-4x slower with it on).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _convert_segment(path)
    finally:
        if enabled:
            gc.enable()


def _convert_segment(path: Path) -> ConvertedSegment:
    result = ConvertedSegment()
    events: dict[str, list[dict[str, Any]]] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    for index, raw in enumerate(read_records(path)):
        try:
            record = decode_record(raw)
        except msgspec.DecodeError as exc:
            # Framing and checksum held, so this is a bug, not a torn write: keep the bytes, lose nothing else.
            record = Record("quarantine", UNKNOWN_SESSION, None, index, b"[]")
            rows = [_quarantine_row(record, _raw_item(raw, f"unreadable spool record: {exc}"))]
            kind, bad = "events", 1
        else:
            kind, rows, bad = _record_rows(record)
        result.quarantined += bad
        if kind == "metrics":
            samples.setdefault(_part_session(record.session), []).extend(rows)
            continue
        for row in rows:
            if row["event_id"] in seen:
                result.duplicates += 1
                continue
            seen.add(row["event_id"])
            events.setdefault(_part_session(row["session_name"]), []).append(row)
    for session, rows in events.items():
        # Grouping rows of a kind together lets zstd find the repeats: parts shrink by a quarter.
        rows.sort(key=lambda row: (row["event_type"], row["timestamp"]))
        result.parts["events", session] = table_to_parquet(rows_to_table(rows, EVENTS))
        result.rows["events", session] = len(rows)
        result.events += len(rows)
    for session, rows in samples.items():
        rows.sort(key=lambda row: (row["name"], row["labels"], row["timestamp"]))
        result.parts["metrics", session] = table_to_parquet(rows_to_table(rows, METRICS))
        result.rows["metrics", session] = len(rows)
    return result


def _part_session(session: str | None) -> str:
    """The session whose key a part goes under; rows of a session that cannot be a key go to the unknown one."""
    try:
        return check_name("session", session or UNKNOWN_SESSION)
    except InvalidName:
        return UNKNOWN_SESSION
