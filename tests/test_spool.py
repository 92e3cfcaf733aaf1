"""The write-ahead spool: durable appends, sealing, torn tails, and resuming after a crash."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from collector import spool as spool_module
from collector.spool import Spool, SpoolFull, SpoolInUse, SpoolTarget, SpoolWriteError, read_records


def _records(spool: Spool) -> list[bytes]:
    return [record for segment in spool.sealed_segments() for record in read_records(segment.path)]


def test_appended_records_come_back_in_order_after_sealing(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_max_bytes=1 << 20)
    for i in range(5):
        spool.append(f"record {i}".encode())
    assert spool.sealed_segments() == []  # the active segment is not shippable yet
    spool.seal()
    assert _records(spool) == [f"record {i}".encode() for i in range(5)]


def test_segments_seal_themselves_at_their_size_limit(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_max_bytes=130)
    for _ in range(10):
        spool.append(b"x" * 60)
    # 68 bytes a framed record: every second record fills a segment.
    assert len(spool.sealed_segments()) == 5
    names = [segment.name for segment in spool.sealed_segments()]
    assert names == sorted(names) and len(set(names)) == 5


def test_a_full_spool_refuses_new_records(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=200, segment_max_bytes=1 << 20)
    spool.append(b"x" * 250)
    assert spool.over_limit()
    with pytest.raises(SpoolFull):
        spool.append(b"more")
    spool.seal()
    spool.remove(spool.sealed_segments()[0])
    assert not spool.over_limit()
    spool.append(b"room again")


def test_a_torn_last_record_ends_the_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_max_bytes=1 << 20)
    spool.append(b"whole")
    spool.append(b"also whole")
    spool.seal()
    path = spool.sealed_segments()[0].path
    with open(path, "ab") as handle:  # a crash in the middle of the next write
        handle.write(b"\x40\x00\x00\x00\x01\x02\x03\x04half a rec")
    assert list(read_records(path)) == [b"whole", b"also whole"]


def test_after_a_crash_open_segments_are_sealed_and_names_never_repeat(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20, segment_max_bytes=1 << 20)
    first.append(b"acknowledged before the crash")
    crashed_segment = first._active.path  # type: ignore[union-attr]
    # No seal, no close: the process died, and with it its lock. A new spool on the same directory takes over.
    first._lock_handle.close()
    second = Spool(tmp_path, max_bytes=1 << 20, segment_max_bytes=1 << 20)
    assert [segment.path for segment in second.sealed_segments()] == [crashed_segment]
    assert _records(second) == [b"acknowledged before the crash"]
    old_name = second.sealed_segments()[0].name
    second.remove(second.sealed_segments()[0])
    second.append(b"after restart")
    second.seal()
    new_name = second.sealed_segments()[0].name
    assert new_name != old_name and new_name > old_name
    assert second.spool_id == first.spool_id


def test_a_failed_write_keeps_nothing_of_the_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_max_bytes=1 << 20)
    spool.append(b"kept")

    def disk_full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("collector.spool.os.fsync", disk_full)
    with pytest.raises(SpoolWriteError, match="No space left"):
        spool.append(b"lost, and never acknowledged")
    monkeypatch.undo()
    spool.append(b"next")
    spool.seal()
    assert _records(spool) == [b"kept", b"next"]


def test_a_segment_being_opened_is_never_listed_as_sealed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The shipper lists while POSTs append. A segment the appender has just created is active: shipping
    # (and then deleting) it would lose every record appended to it afterwards.
    spool = Spool(tmp_path, max_bytes=1 << 30, segment_max_bytes=1 << 20)
    listed: list[str] = []
    listers: list[threading.Thread] = []
    fsync_dir = spool_module._fsync_dir

    def list_meanwhile(path: Path) -> None:
        fsync_dir(path)
        lister = threading.Thread(target=lambda: listed.extend(s.name for s in spool.sealed_segments()))
        lister.start()
        lister.join(timeout=0.2)  # the shipper runs while the appender is still opening the segment
        listers.append(lister)

    monkeypatch.setattr(spool_module, "_fsync_dir", list_meanwhile)
    spool.append(b"acknowledged")
    for lister in listers:
        lister.join()
    assert listed == []


TARGET_A = SpoolTarget("s3://bucket/history", "team-a", "train", "head-0")
TARGET_B = SpoolTarget("s3://bucket/history", "team-b", "train", "head-0")


def test_a_spool_in_use_is_refused_to_a_second_collector(tmp_path: Path) -> None:
    first = Spool(tmp_path, 1 << 20, 1 << 20, TARGET_A)
    with pytest.raises(SpoolInUse, match=f"in use by collector pid {os.getpid()}"):
        Spool(tmp_path, 1 << 20, 1 << 20, TARGET_A)
    first.close()
    Spool(tmp_path, 1 << 20, 1 << 20, TARGET_A).close()


def test_leftovers_are_never_shipped_for_another_target(tmp_path: Path) -> None:
    crashed = Spool(tmp_path, 1 << 20, 1 << 20, TARGET_A)
    crashed.append(b"team a's acknowledged event")
    crashed._lock_handle.close()  # killed: no seal, no close
    with pytest.raises(SpoolInUse, match=r"holds \d+ bytes acknowledged for s3://bucket/history as team-a/train"):
        Spool(tmp_path, 1 << 20, 1 << 20, TARGET_B)
    # Its own collector, started again, finds them and ships them.
    again = Spool(tmp_path, 1 << 20, 1 << 20, TARGET_A)
    assert _records(again) == [b"team a's acknowledged event"]
    again.remove(again.sealed_segments()[0])
    again.close()
    # Emptied, the folder may serve another target; the old target's read positions go with it.
    (tmp_path / "tail-offsets.json").write_text("{}")
    taken = Spool(tmp_path, 1 << 20, 1 << 20, TARGET_B)
    assert not (tmp_path / "tail-offsets.json").exists()
    assert taken.sealed_segments() == []
    taken.close()
