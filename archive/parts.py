"""Which data objects of a listing hold a session's rows: every reader of parts goes through `live`.

A compacted object (`layout.compacted_key`) holds the rows of a node's parts first..last. It is put
whole before the parts it replaces are deleted, so for a while a listing holds both: `live` keeps the
compacted object and drops the parts in its range, and a reader sees every row exactly once whether it
listed before the put, between the put and the deletes, or after them. A compacted object inside a
larger one (compacted again) is dropped the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from .layout import PartKind, PartName, SessionRef, parse_data_key, parts_prefix
from .storage import ObjectInfo, Storage


def live(listing: Iterable[ObjectInfo]) -> list[ObjectInfo]:
    """The objects of `listing` that readers read, in key order; keys that are not data objects are left out."""
    by_node: dict[tuple[str, str, str], list[tuple[PartName, ObjectInfo]]] = defaultdict(list)
    for info in listing:
        name = parse_data_key(info.key)
        if name is not None:
            by_node[(name.kind, name.ref.path, name.node)].append((name, info))
    kept: list[ObjectInfo] = []
    for objects in by_node.values():
        ranges = {(name.first, name.last) for name, _ in objects if name.compacted}
        # A range inside a wider one (compacted again) is covered by it.
        covering = [r for r in ranges if not any(o != r and o[0] <= r[0] and r[1] <= o[1] for o in ranges)]
        for name, info in objects:
            if name.compacted:
                if (name.first, name.last) in covering:
                    kept.append(info)
            elif not any(a <= name.first <= b for a, b in covering):
                kept.append(info)
    return sorted(kept, key=lambda info: info.key)


def parts_fingerprint(parts: list[ObjectInfo]) -> str:
    """What a snapshot was derived from: changes whenever a live part is added, replaced or removed (a
    re-upload changes size or mtime). The compactor writes it into a snapshot it keeps current."""
    newest = max((part.mtime_ns for part in parts), default=0)
    return f"{len(parts)}:{sum(part.size for part in parts)}:{newest}"


def list_live(storage: Storage, kind: PartKind, ref: SessionRef, node: str | None = None) -> list[ObjectInfo]:
    """The data objects a reader reads for this kind of the session (of one node if given)."""
    return live(storage.list(parts_prefix(kind, ref, node)))
