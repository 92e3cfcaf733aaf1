"""Tails Ray's event files: export API files (submission job status lives only there) and legacy logs.

Offsets are checkpointed per file (by inode, so a renamed rotation is finished, not restarted) and
advance only after the lines are durable in the spool. `session_latest` is followed when Ray
restarts: the old session's files are read to their end before the new session's.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import msgspec

from .ingest import Ingest
from .raysession import current_session_dir
from .spool import SpoolFull, SpoolWriteError, write_file_atomic

log = logging.getLogger(__name__)

MAX_READ_PER_FILE = 8 * 1024 * 1024
_FINGERPRINT_BYTES = 64
_SOURCES = (
    ("export", "logs/export_events", "event_EXPORT_*.log*"),
    ("legacy", "logs/events", "event_*.log*"),
)


class FileOffset(msgspec.Struct):
    path: str
    offset: int
    mtime_ns: int = 0
    # crc32 of the bytes just before `offset`: a file rewritten to the same size is noticed.
    fingerprint: int = 0


class Checkpoint(msgspec.Struct):
    session_dir: str | None = None
    files: dict[str, FileOffset] = msgspec.field(default_factory=dict)  # key: "dev:inode"


class EventFileTailer:
    def __init__(
        self,
        ray_temp_dir: Path,
        ingest: Ingest,
        checkpoint_path: Path,
        on_session: Callable[[Path], None] = lambda _: None,
    ) -> None:
        self.ray_temp_dir = ray_temp_dir
        self.ingest = ingest
        self.checkpoint_path = checkpoint_path
        self.on_session = on_session
        self.checkpoint = self._load()
        self.lines_shipped = 0

    def _load(self) -> Checkpoint:
        try:
            return msgspec.json.decode(self.checkpoint_path.read_bytes(), type=Checkpoint)
        except FileNotFoundError:
            return Checkpoint()
        except (msgspec.DecodeError, OSError):
            log.warning("unreadable tail checkpoint %s: event files are read again from the start "
                        "(repeats are removed by event id)", self.checkpoint_path)  # fmt: skip
            return Checkpoint()

    def _save(self) -> None:
        write_file_atomic(self.checkpoint_path, msgspec.json.encode(self.checkpoint))

    def poll(self) -> None:
        """Ship every complete new line of the current session's event files."""
        latest = current_session_dir(self.ray_temp_dir)
        previous = Path(self.checkpoint.session_dir) if self.checkpoint.session_dir else None
        if previous is not None and latest is not None and previous != latest:
            if previous.is_dir():
                self._poll_session(previous)
            self.checkpoint = Checkpoint(session_dir=str(latest))
            self._save()
        if latest is None:
            return
        if self.checkpoint.session_dir is None:
            self.checkpoint.session_dir = str(latest)
        self.on_session(latest)
        self._poll_session(latest)

    def _poll_session(self, session_dir: Path) -> None:
        changed = False
        for kind, folder, pattern in _SOURCES:
            for path in sorted((session_dir / folder).glob(pattern)):
                changed |= self._poll_file(kind, session_dir.name, path)
        if changed:
            self._save()

    def _poll_file(self, kind: str, session: str, path: Path) -> bool:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return False
        key = f"{stat.st_dev}:{stat.st_ino}"
        entry = self.checkpoint.files.get(key)
        if entry is None:
            entry = self.checkpoint.files[key] = FileOffset(str(path), 0)
        entry.path = str(path)
        if stat.st_size == entry.offset and stat.st_mtime_ns == entry.mtime_ns:
            return False
        with open(path, "rb") as handle:
            if stat.st_size < entry.offset or _fingerprint(handle, entry.offset) != entry.fingerprint:
                log.info("%s was truncated or rewritten: reading it from the start", path)
                entry.offset = 0
            handle.seek(entry.offset)
            chunk = handle.read(min(stat.st_size - entry.offset, MAX_READ_PER_FILE))
        end = chunk.rfind(b"\n")
        if end < 0:
            return False  # no complete line yet
        lines = [line for line in chunk[: end + 1].splitlines() if line.strip()]
        try:
            self.ingest.file_lines(kind, session, lines)
        except (SpoolFull, SpoolWriteError) as exc:
            log.warning("event file lines wait: %s", exc)
            return False
        entry.offset += end + 1
        entry.mtime_ns = stat.st_mtime_ns
        with open(path, "rb") as handle:
            entry.fingerprint = _fingerprint(handle, entry.offset)
        self.lines_shipped += len(lines)
        return True


def _fingerprint(handle: BinaryIO, offset: int) -> int:
    start = max(0, offset - _FINGERPRINT_BYTES)
    handle.seek(start)
    return zlib.crc32(handle.read(offset - start))
