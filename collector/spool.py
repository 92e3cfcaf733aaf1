"""A write-ahead spool on local disk: what the collector acknowledged, kept until the archive has it.

Records are appended to numbered segment files and fsynced before the caller acknowledges them.
A segment is sealed every few seconds or megabytes; the shipper turns sealed segments into Parquet
parts, uploads them, and only then removes them. After a crash every segment still on disk is
sealed and shipped again under the same part name, so the archive never holds a record twice.

Record framing: u32 length, u32 crc32, then the record. A torn last record (a crash mid-write, so
never acknowledged) fails its check and ends the segment.

A spool belongs to one collector: it records the target its records were acknowledged for (archive,
namespace, cluster, node) and is locked while open, so leftovers are only ever shipped where they were
meant to go.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")
_SEGMENT_GLOB = "seg-*.wal"


class SpoolFull(Exception):
    """The spool is past its limit: the sender should retry later."""


class SpoolWriteError(Exception):
    """The record could not be made durable (disk full, I/O error); nothing of it was kept."""


class SpoolInUse(Exception):
    """Another collector holds this spool, or it holds data acknowledged for another target."""


class SpoolTarget(msgspec.Struct, frozen=True):
    """Where a spool's records go: the collector they were acknowledged by."""

    archive: str
    namespace: str
    cluster: str
    node: str

    def __str__(self) -> str:
        return f"{self.archive} as {self.namespace}/{self.cluster} node {self.node}"


class SpoolState(msgspec.Struct):
    """Persisted so part names stay unique across restarts and across a spool wiped with its pod."""

    spool_id: str
    next_seq: int
    target: SpoolTarget | None = None


@dataclass(frozen=True)
class Segment:
    seq: int
    name: str  # "{spool_id}-{seq:08d}": the part name in the archive
    path: Path
    size: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class Spool:
    def __init__(
        self, directory: Path, max_bytes: int, segment_max_bytes: int, target: SpoolTarget | None = None
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_max_bytes = segment_max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_handle = _lock_directory(directory)
        self._lock = threading.Lock()
        self._state_path = directory / "state.json"
        self._active: _ActiveSegment | None = None
        try:
            self._state = self._load_state(target)
        except BaseException:
            self._lock_handle.close()
            raise
        self._bytes = sum(p.stat().st_size for p in directory.glob(_SEGMENT_GLOB))

    def _load_state(self, target: SpoolTarget | None) -> SpoolState:
        if self._state_path.exists():
            state = msgspec.json.decode(self._state_path.read_bytes(), type=SpoolState)
        else:
            state = SpoolState(spool_id=f"{time.time_ns() // 1_000_000:013d}", next_seq=0)
        if target is not None and state.target not in (None, target):
            self._retarget(state.target, target)
            state = SpoolState(spool_id=f"{time.time_ns() // 1_000_000:013d}", next_seq=0)
        state.target = target or state.target
        # Segments left on disk by a crash are sealed now; new ones start after them.
        on_disk = [_seq_of(path) for path in self.directory.glob(_SEGMENT_GLOB)]
        state.next_seq = max([state.next_seq, *(s + 1 for s in on_disk)])
        write_file_atomic(self._state_path, msgspec.json.encode(state))
        return state

    def _retarget(self, old: SpoolTarget, new: SpoolTarget) -> None:
        """Take over a spool another target left empty; refuse one that still holds its data."""
        leftovers = [*self.directory.glob(_SEGMENT_GLOB), *self.directory.glob(f"unshippable/{_SEGMENT_GLOB}")]
        if leftovers:
            size = sum(path.stat().st_size for path in leftovers)
            raise SpoolInUse(
                f"the spool at {self.directory} holds {size} bytes acknowledged for {old}, not for {new}. "
                "Start the collector of that target on this spool so it ships them, or give this collector "
                "its own --spool-dir."
            )
        log.warning("spool %s was used for %s; it now serves %s (it held no data)", self.directory, old, new)
        # The read positions of the old target's files mean nothing for the new one.
        for path in self.directory.iterdir():
            if path.is_file() and path.name not in ("state.json", _LOCK_NAME):
                path.unlink()

    @property
    def spool_id(self) -> str:
        return self._state.spool_id

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def over_limit(self) -> bool:
        return self._bytes >= self.max_bytes

    def append(self, record: bytes) -> None:
        """Make the record durable (written and fsynced) or raise, keeping nothing of it."""
        if self.over_limit():
            raise SpoolFull(f"spool holds {self._bytes} bytes, its limit is {self.max_bytes}")
        with self._lock:
            if self._active is None:
                self._active = self._open_segment()
            active = self._active
            active.write(_HEADER.pack(len(record), zlib.crc32(record)) + record)
            self._bytes += _HEADER.size + len(record)
            if active.size >= self.segment_max_bytes:
                self._seal_locked()

    def active_age(self) -> float:
        """Seconds since the active segment received its first record (0 if there is none)."""
        active = self._active
        return time.monotonic() - active.opened if active is not None else 0.0

    def seal(self) -> None:
        """Close the active segment, so the shipper can take it."""
        with self._lock:
            self._seal_locked()

    def _seal_locked(self) -> None:
        if self._active is not None:
            self._active.close()
            self._active = None

    def _open_segment(self) -> _ActiveSegment:
        seq = self._state.next_seq
        self._state.next_seq += 1
        write_file_atomic(self._state_path, msgspec.json.encode(self._state))
        path = self.directory / f"seg-{seq:08d}.wal"
        segment = _ActiveSegment(path)
        _fsync_dir(self.directory)
        return segment

    def sealed_segments(self) -> list[Segment]:
        """Segments ready to ship, oldest first (the active one is not among them)."""
        # Under the lock: a segment an append is opening at this moment must be seen as active, or it
        # would be shipped and deleted while acknowledged records are still being written to it.
        with self._lock:
            active = self._active.path if self._active is not None else None
            paths = [path for path in sorted(self.directory.glob(_SEGMENT_GLOB)) if path != active]
        segments = []
        for path in paths:
            seq = _seq_of(path)
            segments.append(Segment(seq, self.segment_name(seq), path, path.stat().st_size))
        return segments

    def segment_name(self, seq: int) -> str:
        return f"{self._state.spool_id}-{seq:08d}"

    def remove(self, segment: Segment) -> None:
        """Forget a segment once the archive has confirmed its parts."""
        segment.path.unlink(missing_ok=True)
        with self._lock:
            self._bytes = max(0, self._bytes - segment.size)

    def set_aside(self, segment: Segment) -> Path:
        """Move a segment that cannot be shipped out of the way, keeping it on disk."""
        aside = self.directory / "unshippable"
        aside.mkdir(exist_ok=True)
        target = aside / segment.path.name
        os.replace(segment.path, target)
        with self._lock:
            self._bytes = max(0, self._bytes - segment.size)
        return target

    def close(self) -> None:
        self.seal()
        self._lock_handle.close()


_LOCK_NAME = "lock"


def _lock_directory(directory: Path):  # type: ignore[no-untyped-def]
    """Hold an exclusive lock on the spool for this process's lifetime (the kernel drops it at exit)."""
    handle = open(directory / _LOCK_NAME, "a+")  # noqa: SIM115 - held until close
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise SpoolInUse(
            f"the spool at {directory} is in use by {holder}: every collector needs a --spool-dir of its own"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"collector pid {os.getpid()}")
    handle.flush()
    return handle


class _ActiveSegment:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = open(path, "ab")  # noqa: SIM115 - held open across appends
        self.size = self._handle.tell()
        self.opened = time.monotonic()

    def write(self, data: bytes) -> None:
        start = self.size
        try:
            self._handle.write(data)
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            # Cut the partial record off, so the segment holds only whole, acknowledged records.
            try:
                self._handle.seek(start)
                self._handle.truncate(start)
                os.fsync(self._handle.fileno())
            except OSError:
                log.exception("could not cut a failed write off %s", self.path)
            raise SpoolWriteError(f"could not write to the spool at {self.path}: {exc}") from exc
        self.size = start + len(data)

    def close(self) -> None:
        self._handle.close()


def _seq_of(path: Path) -> int:
    return int(path.stem.split("-")[1])


def read_records(path: Path) -> Iterator[bytes]:
    """The whole records of a segment, in order; stops at a torn or corrupt tail."""
    data = path.read_bytes()
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        record = data[start : start + length]
        if len(record) != length or zlib.crc32(record) != crc:
            log.warning("segment %s ends in a torn record at byte %d; the rest is ignored", path, offset)
            return
        yield record
        offset = start + length
