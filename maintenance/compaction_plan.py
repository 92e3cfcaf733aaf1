"""What the compactor rewrites and what it deletes, decided from a listing alone (no reads, no clock of its own).

Groups. A node's live objects (`archive.parts.live`) in sequence order are cut into runs of neighbours
that may be merged: plain parts under the size bound, and compacted objects that are small (under a
quarter of the bound) and settled (older than the grace). Anything else (a big object, a fresh compacted
object) ends a run. Each run is packed greedily, in order, into groups of at most `max_bytes` of input;
a group of one object is left alone. The groups are a function of the listing, so two compactors that
list the same objects write the same keys with the same bytes; a fresh compacted object ends a run
rather than joining one, so a compactor that lists while another is writing plans the same groups for
what is left instead of a range that straddles the other's.

Deletions. An object that is no longer live is covered by a live compacted object; it is deleted once
that compacted object is older than the grace, so a reader that listed before the compacted object was
put has had the grace to read what it listed. An object newer than the compacted object covering it
cannot be inside it (a part uploaded late, into a range already compacted): it is kept and reported.
Nothing of a node is deleted while two of its compacted objects overlap without one holding the other.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from archive.layout import PartName, parse_data_key
from archive.parts import live
from archive.storage import ObjectInfo

# A compacted object under this share of the bound may be merged again with its neighbours.
SMALL_SHARE = 4


@dataclass(frozen=True)
class Held:
    """A data object of one node and kind: where it is and which sequences it holds."""

    info: ObjectInfo
    name: PartName

    @property
    def key(self) -> str:
        return self.info.key


@dataclass
class Deletions:
    """A node's objects that readers no longer read, by what happens to them now."""

    delete: list[ObjectInfo]  # covered by a compacted object older than the grace
    waiting: list[ObjectInfo]  # covered by a compacted object still within the grace
    late: list[ObjectInfo]  # in a compacted range but newer than the object covering it: kept
    overlapping: list[tuple[str, str]]  # compacted objects that overlap without nesting: nothing deleted


def by_node(listing: Iterable[ObjectInfo]) -> dict[str, list[Held]]:
    """The data objects of a listing (of one session and kind), by node, in sequence order."""
    nodes: dict[str, list[Held]] = defaultdict(list)
    for info in listing:
        name = parse_data_key(info.key)
        if name is not None:
            nodes[name.node].append(Held(info, name))
    for objects in nodes.values():
        objects.sort(key=lambda held: (held.name.first, held.name.last, held.name.compacted))
    return dict(nodes)


def live_of(objects: list[Held]) -> list[Held]:
    """The live ones of a node's objects, in sequence order."""
    kept = {info.key for info in live(held.info for held in objects)}
    return [held for held in objects if held.key in kept]


def groups(objects: list[Held], max_bytes: int, settled_before_ns: int) -> list[list[Held]]:
    """Runs of neighbouring live objects to rewrite as one each (see the module's docstring)."""
    found: list[list[Held]] = []
    current: list[Held] = []
    size = 0

    def close() -> None:
        nonlocal current, size
        if len(current) > 1:
            found.append(current)
        current, size = [], 0

    for held in live_of(objects):
        if not _mergeable(held, max_bytes, settled_before_ns):
            close()
            continue
        if size + held.info.size > max_bytes:
            close()
        current.append(held)
        size += held.info.size
    close()
    return found


def _mergeable(held: Held, max_bytes: int, settled_before_ns: int) -> bool:
    if held.info.size >= max_bytes:
        return False
    if not held.name.compacted:
        return True
    return held.info.size < max_bytes // SMALL_SHARE and held.info.mtime_ns <= settled_before_ns


def overlapping(objects: list[Held]) -> list[tuple[str, str]]:
    """Pairs of compacted objects whose ranges overlap with neither inside the other: readers would read
    the rows they share twice, so the compactor never makes one and deletes nothing beside one."""
    ranges = [held for held in objects if held.name.compacted]
    pairs = []
    for index, a in enumerate(ranges):
        for b in ranges[index + 1 :]:
            if _crosses((a.name.first, a.name.last), (b.name.first, b.name.last)):
                pairs.append((a.key, b.key))
    return pairs


def crosses_any(first: str, last: str, objects: list[Held]) -> bool:
    """Whether a range `first`..`last` would overlap a compacted object of `objects` without nesting."""
    return any(_crosses((first, last), (h.name.first, h.name.last)) for h in objects if h.name.compacted)


def _crosses(a: tuple[str, str], b: tuple[str, str]) -> bool:
    overlap = a[0] <= b[1] and b[0] <= a[1]
    nested = (a[0] <= b[0] and b[1] <= a[1]) or (b[0] <= a[0] and a[1] <= b[1])
    return overlap and not nested


def deletions(objects: list[Held], now_ns: int, grace_ns: int) -> Deletions:
    """What of a node's objects may be deleted now, what waits for the grace, what is late."""
    result = Deletions([], [], [], overlapping(objects))
    if result.overlapping:
        return result
    now_live = live_of(objects)
    covering = [held for held in now_live if held.name.compacted]
    live_keys = {held.key for held in now_live}
    for held in objects:
        if held.key in live_keys:
            continue
        cover = next(c for c in covering if c.name.first <= held.name.first and held.name.last <= c.name.last)
        if held.info.mtime_ns > cover.info.mtime_ns:
            result.late.append(held.info)
        elif now_ns - cover.info.mtime_ns >= grace_ns:
            result.delete.append(held.info)
        else:
            result.waiting.append(held.info)
    return result
