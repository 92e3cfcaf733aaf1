"""Which objects a reader reads while parts are compacted: every row exactly once at every moment."""

from __future__ import annotations

import pytest

from archive import layout
from archive.parts import live
from archive.storage import ObjectInfo

REF = layout.SessionRef("team-a", "train", "session_2026-12-01_00-00-00_000000_1")
SEQS = [f"1764547200000-{n:08d}" for n in range(6)]


def names(keys: list[str]) -> list[str]:
    return [info.key.rsplit("/", 1)[1] for info in live(ObjectInfo(key, 1, 1) for key in keys)]


def part(n: int, node: str = "head") -> str:
    return layout.part_key("events", REF, node, SEQS[n])


def compacted(first: int, last: int, node: str = "head") -> str:
    return layout.compacted_key("events", REF, node, SEQS[first], SEQS[last])


def test_plain_parts_are_all_read() -> None:
    assert names([part(n) for n in range(3)]) == [f"part-{SEQS[n]}.parquet" for n in range(3)]


def test_a_compacted_object_replaces_exactly_the_parts_in_its_range() -> None:
    # Between the put of the compacted object and the deletes of the parts it holds.
    found = names([*(part(n) for n in range(6)), compacted(0, 3)])
    assert found == [f"compacted-{SEQS[0]}_{SEQS[3]}.parquet", f"part-{SEQS[4]}.parquet", f"part-{SEQS[5]}.parquet"]


def test_compacted_again_the_wider_range_wins() -> None:
    found = names([compacted(0, 2), compacted(3, 5), compacted(0, 5), part(5)])
    assert found == [f"compacted-{SEQS[0]}_{SEQS[5]}.parquet"]


def test_nodes_kinds_and_sessions_are_apart() -> None:
    other = layout.SessionRef("team-a", "train", "session_2026-12-02_00-00-00_000000_1")
    keys = [part(0), part(0, "worker-1"), compacted(0, 0), layout.part_key("logs", REF, "head", SEQS[0]),
            layout.part_key("events", other, "head", SEQS[0]), layout.manifest_key(REF)]  # fmt: skip
    found = [info.key for info in live(ObjectInfo(key, 1, 1) for key in keys)]
    assert found == sorted([part(0, "worker-1"), compacted(0, 0), layout.part_key("logs", REF, "head", SEQS[0]),
                            layout.part_key("events", other, "head", SEQS[0])])  # fmt: skip


@pytest.mark.parametrize("first,last", [("a_b", "c"), ("b", "a"), ("../x", "y")])
def test_bad_ranges_are_refused(first: str, last: str) -> None:
    with pytest.raises(layout.InvalidName):
        layout.compacted_key("events", REF, "head", first, last)
