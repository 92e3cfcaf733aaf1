"""What the archive holds (`ray-history du`): sessions, objects and bytes per namespace, cluster, kind or month.

One scan (maintenance.inventory: a listing of sessions/ and of each data prefix), no object read, so the
server can compute it for its /metrics gauges as often as it lists the archive anyway. Every object
under the five prefixes is counted once, in the group of its session; objects whose key names no
session are shown as the group "(unparsed)", so the totals are what a listing of the prefixes sums.
A session's month is the month it ended (as retention ages it), UTC.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from archive.storage import Storage

from .inventory import ALL_KINDS, Inventory, SessionObjects, scan

GROUPINGS = ("namespace", "cluster", "kind", "month")
UNPARSED = "(unparsed)"


@dataclass(frozen=True)
class UsageRow:
    group: str
    sessions: int
    objects: int
    bytes: int

    def to_json(self) -> dict[str, object]:
        return {"group": self.group, "sessions": self.sessions, "objects": self.objects, "bytes": self.bytes}


def usage(storage: Storage, by: str = "namespace") -> list[UsageRow]:
    return usage_of(scan(storage), by)


def usage_all(storage: Storage) -> dict[str, list[UsageRow]]:
    """Every grouping from one scan: what the server's /metrics gauges are made of."""
    inventory = scan(storage)
    return {by: usage_of(inventory, by) for by in GROUPINGS}


def usage_of(inventory: Inventory, by: str = "namespace") -> list[UsageRow]:
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}: use one of {', '.join(GROUPINGS)}")
    sessions: dict[str, set[str]] = {}
    objects: dict[str, int] = {}
    sizes: dict[str, int] = {}

    def add(group: str, path: str | None, count: int, size: int) -> None:
        sessions.setdefault(group, set())
        if path is not None and count:
            sessions[group].add(path)
        objects[group] = objects.get(group, 0) + count
        sizes[group] = sizes.get(group, 0) + size

    for session in inventory.sessions.values():
        for group, kinds in _groups(session, by):
            add(group, session.ref.path, session.count_of(kinds), session.bytes_of(kinds))
    for kind, infos in inventory.unparsed.items():
        add(kind if by == "kind" else UNPARSED, None, len(infos), sum(info.size for info in infos))
    order = {kind: index for index, kind in enumerate(ALL_KINDS)} if by == "kind" else {}
    groups = sorted(objects, key=lambda group: (order.get(group, len(order)), group))
    return [UsageRow(group, len(sessions[group]), objects[group], sizes[group]) for group in groups]


def _groups(session: SessionObjects, by: str) -> Iterable[tuple[str, tuple[str, ...]]]:
    ref = session.ref
    if by == "kind":
        return [(kind, (kind,)) for kind in ALL_KINDS if session.objects_of(kind)]
    if by == "namespace":
        return [(ref.namespace, ALL_KINDS)]
    if by == "cluster":
        return [(f"{ref.namespace}/{ref.cluster}", ALL_KINDS)]
    end = session.end_ms()
    month = datetime.fromtimestamp(end / 1000, UTC).strftime("%Y-%m") if end is not None else "unknown"
    return [(month, ALL_KINDS)]


def totals(inventory: Inventory) -> UsageRow:
    """The whole archive: every session once, every object listed."""
    size = sum(session.bytes_of() for session in inventory.sessions.values())
    size += sum(info.size for infos in inventory.unparsed.values() for info in infos)
    return UsageRow("total", len(inventory.sessions), inventory.listed, size)
